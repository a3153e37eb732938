"""tools/train_net.py on user mistakes: one line naming the file or key, exit code 2, no traceback."""
import importlib.util
import logging
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import NucleiCheckpointer
from maskrcnnpp.engine.setup import load_cfg

NESTED = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
FPN = "configs/nuclei/mask_rcnn_R_18_FPN_cpu.yaml"
ON_SAMPLE = ["DATASETS.TRAIN", "('dsb2018_sample_train',)", "DATASETS.TEST", "('dsb2018_sample_val',)"]


@pytest.fixture(scope="module")
def train_net():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "train_net.py")
    spec = importlib.util.spec_from_file_location("train_net_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def fresh_loggers():
    """default_setup attaches (once per process) handlers to the stream of the test that ran it
    first; pytest closes that stream afterwards. Give every test its own."""
    def forget_handlers():
        for name in ("detectron2", "fvcore", "maskrcnnpp", "d2"):
            for handler in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(handler)
        setup_logger.cache_clear()

    forget_handlers()
    yield
    forget_handlers()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for name, config in (("nested", NESTED), ("fpn", FPN)):
        torch.manual_seed(0)
        model = build_model(load_cfg(os.path.join(repo_root, config)))
        NucleiCheckpointer(model, save_dir=str(folder)).save(name)
        paths[name] = str(folder / f"{name}.pth")
    truncated = folder / "truncated.pth"
    truncated.write_bytes(open(paths["nested"], "rb").read()[:100_000])
    paths["truncated"] = str(truncated)
    garbage = folder / "garbage.pth"
    garbage.write_bytes(b"<html>404 Not Found</html>\n")
    paths["garbage"] = str(garbage)
    return paths


def one_line_error(train_net, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        train_net.run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def test_eval_only_without_weights(train_net, repo_root, tmp_path, capsys):
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), "--eval-only",
                                              *ON_SAMPLE, "OUTPUT_DIR", str(tmp_path)])
    assert "no weights given: set MODEL.WEIGHTS" in line
    assert not (tmp_path / "inference").exists()


def test_eval_only_with_weights_of_another_model(train_net, repo_root, weights, tmp_path, capsys):
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), "--eval-only",
                                              *ON_SAMPLE, "MODEL.WEIGHTS", weights["fpn"], "OUTPUT_DIR", str(tmp_path)])
    assert f"{weights['fpn']}: weights do not match" in line
    assert "missing keys (backbone.decoder." in line and "keys of another shape (backbone.fpn_lateral" in line
    assert "more" in line
    assert not (tmp_path / "inference").exists()


@pytest.mark.parametrize(
    "which, message",
    [
        ("truncated", "truncated checkpoint"),
        ("garbage", "not a checkpoint (neither a PyTorch .pth zip archive nor a pickle"),
        ("missing", "weights file not found"),
    ],
)
def test_unreadable_weights(train_net, repo_root, weights, tmp_path, capsys, which, message):
    path = weights.get(which, str(tmp_path / "no_such_model.pth"))
    for mode in (["--eval-only"], []):  # evaluation and training both refuse, before any work
        line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), *mode,
                                                  *ON_SAMPLE, "MODEL.WEIGHTS", path, "OUTPUT_DIR", str(tmp_path)])
        assert line.startswith(f"error: {path}: ") and message in line


def test_missing_config_file(train_net, tmp_path, capsys):
    line = one_line_error(train_net, capsys, ["--config-file", str(tmp_path / "nope.yaml")])
    assert line == f"error: {tmp_path / 'nope.yaml'}: config file not found"


def test_unknown_dataset_names_the_closest_ones(train_net, repo_root, capsys):
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED),
                                              "DATASETS.TRAIN", "('dsb2018_sample_trian',)"])
    assert "DATASETS.TRAIN: unknown dataset 'dsb2018_sample_trian' (did you mean dsb2018_sample_train" in line
    assert "datasets are registered" in line and len(line) < 400


@pytest.mark.parametrize(
    "override, message",
    [
        (["MODEL.NESTED_FPN.CONNECTIVITY", "foo"],
         "MODEL.NESTED_FPN.CONNECTIVITY='foo' is not supported; allowed values: ['unet', 'unet_e', 'unet+', 'unet++']"),
        (["MODEL.NESTED_FPN.NO_SUCH_KEY", "1"], "config override: Non-existent key: MODEL.NESTED_FPN.NO_SUCH_KEY"),
        (["SOLVER.MAX_ITER", "many"], "SOLVER.MAX_ITER"),
        (["SOLVER.MAX_ITER"], "config overrides come in KEY VALUE pairs; 'SOLVER.MAX_ITER' has no value"),
        (["TEST.TILE_SIZE", "64", "TEST.TILE_OVERLAP", "80"], "TEST.TILE_SIZE (64) must be larger than TEST.TILE_OVERLAP (80)"),
    ],
)
def test_bad_config_values(train_net, repo_root, tmp_path, capsys, override, message):
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), *ON_SAMPLE,
                                              "OUTPUT_DIR", str(tmp_path), *override])
    assert message in line


def test_exit_code_and_debug_traceback_as_a_process(repo_root, tmp_path):
    cmd = [sys.executable, os.path.join(repo_root, "tools/train_net.py"), "--config-file",
           os.path.join(repo_root, NESTED), *ON_SAMPLE[:2], "DATASETS.TEST", "('nuclei_that_do_not_exist',)"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        result.stderr.strip().splitlines()[-1]
    ]
    assert "Traceback" not in result.stderr and "unknown dataset 'nuclei_that_do_not_exist'" in result.stderr

    debug = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
                           env=dict(os.environ, MASKRCNNPP_DEBUG="1"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
