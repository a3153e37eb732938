"""One run per OUTPUT_DIR: the lock a second run is refused by, and the temporaries a killed run left."""
import importlib.util
import os
import signal
import subprocess
import sys

import pytest

from maskrcnnpp.engine.output_dir import LOCK_NAME, OutputDirInUse, hold_output_dir
from maskrcnnpp.errors import UserError

NESTED = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
SAMPLE = ["DATASETS.TRAIN", "('dsb2018_sample_train',)", "DATASETS.TEST", "()",
          "SOLVER.MAX_ITER", "20", "SOLVER.CHECKPOINT_PERIOD", "5"]

HOLDER = """
import sys
from maskrcnnpp.engine.output_dir import hold_output_dir
lock = hold_output_dir(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path, repo_root):
    """A second process holding tmp_path/run's lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], cwd=repo_root,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def load_train_net(repo_root):
    spec = importlib.util.spec_from_file_location("train_net_lock_test", os.path.join(repo_root, "tools", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_second_run_on_a_folder_in_use_is_one_line_naming_folder_and_process(repo_root, tmp_path, holder, capsys,
                                                                              fresh_loggers):
    output = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        load_train_net(repo_root).run(["--config-file", os.path.join(repo_root, NESTED), *SAMPLE,
                                       "OUTPUT_DIR", output])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: OUTPUT_DIR {output} is in use by another run (process {holder.pid} on ")
    assert sorted(os.listdir(output)) == [LOCK_NAME]  # nothing of the refused run was written


def test_a_killed_run_does_not_leave_the_lock_stuck(tmp_path, holder):
    with pytest.raises(OutputDirInUse):
        hold_output_dir(str(tmp_path / "run"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = hold_output_dir(str(tmp_path / "run"))
    assert f"process {os.getpid()} on " in open(tmp_path / "run" / LOCK_NAME).read()
    lock.close()
    hold_output_dir(str(tmp_path / "run")).close()  # closing releases it too


KILLED_WRITER = """
import os, sys
from maskrcnnpp.utils.json_io import atomic_write
with atomic_write(os.path.join(sys.argv[1], "model_0000004.pth"), "wb") as f:
    f.write(b"half a checkpoint")
    f.flush()
    os._exit(9)  # killed in the middle of the write
"""


def test_temporaries_of_a_killed_checkpoint_write_are_removed_when_the_folder_is_taken(repo_root, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.tmp").write_text("the user's")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(folder)], cwd=repo_root)
    assert result.returncode == 9
    left = [n for n in os.listdir(folder) if n.startswith(".model_0000004.pth.")]
    assert len(left) == 1 and left[0].endswith(".tmp")
    hold_output_dir(str(folder)).close()
    assert sorted(os.listdir(folder)) == sorted([LOCK_NAME, "notes.tmp"])


def test_folder_that_cannot_be_created_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^OUTPUT_DIR .*file/run: cannot write there \("):
        hold_output_dir(str(tmp_path / "file" / "run"))
