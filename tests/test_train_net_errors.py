"""tools/train_net.py on user mistakes: one line naming the file or key, exit code 2, no traceback."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import torch
from detectron2.modeling import build_model

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


# default_setup attaches logging handlers to the stream of the test that ran it first (conftest.py)
pytestmark = pytest.mark.usefixtures("fresh_loggers")


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


@pytest.mark.parametrize(
    "content, found",
    [("", "nothing (an empty file)"), ("42\n", "an int"), ("- MODEL\n- SOLVER\n", "a list")],
)
def test_config_file_that_is_not_a_mapping(train_net, tmp_path, capsys, content, found):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    line = one_line_error(train_net, capsys, ["--config-file", str(path)])
    assert line == f"error: {path}: a config file must hold a mapping of keys (KEY: value lines), but it holds {found}"


def test_config_whose_base_is_empty_names_the_base(train_net, tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("")
    (tmp_path / "child.yaml").write_text('_BASE_: "base.yaml"\nSEED: 1\n')
    line = one_line_error(train_net, capsys, ["--config-file", str(tmp_path / "child.yaml")])
    assert line.startswith(f"error: {tmp_path / 'base.yaml'}: a config file must hold a mapping")


@pytest.mark.parametrize(
    "override, message",
    [
        (["DATASETS.TRAIN", "()"], "DATASETS.TRAIN is empty; name the datasets to train on"),
        (["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH must be a whole number of at least 1, not 0"),
        (["SOLVER.MAX_ITER", "-5"], "SOLVER.MAX_ITER must be a whole number of at least 1, not -5"),
        (["SOLVER.CHECKPOINT_PERIOD", "0"], "SOLVER.CHECKPOINT_PERIOD must be a whole number of at least 1"),
        (["SOLVER.BASE_LR", "0.0"], "SOLVER.BASE_LR must be a positive number, not 0.0"),
        (["SOLVER.STEPS", "(500, 400)"], "SOLVER.STEPS must increase, not (500, 400)"),
        (["SOLVER.STEPS", "(-1,)"], "SOLVER.STEPS must be positive iteration numbers"),
        (["MODEL.DEVICE", "cuda"], "MODEL.DEVICE is cuda but no CUDA GPU is available here; add MODEL.DEVICE cpu"),
    ],
)
def test_keys_a_user_edits_are_checked_when_the_config_loads(train_net, repo_root, tmp_path, capsys,
                                                            override, message):
    if override[0] == "MODEL.DEVICE" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), *ON_SAMPLE,
                                              "OUTPUT_DIR", str(tmp_path / "out"), *override])
    assert message in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_gpu_configs_on_a_machine_without_one_are_one_line(train_net, repo_root, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_50_NestedFPN.yaml"),
                                              *ON_SAMPLE, "OUTPUT_DIR", str(tmp_path)])
    assert "MODEL.DEVICE is cuda but no CUDA GPU is available here" in line
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), "--num-gpus", "2",
                                              *ON_SAMPLE, "OUTPUT_DIR", str(tmp_path)])
    assert "--num-gpus 2: no CUDA GPU is available here" in line


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_output_dir_that_cannot_be_written(train_net, repo_root, tmp_path, capsys, where):
    if where == "under_a_file":
        (tmp_path / "a_file").write_text("x")
        output = str(tmp_path / "a_file" / "run")
    else:
        output = "/proc/maskrcnnpp_run"
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), *ON_SAMPLE,
                                              "OUTPUT_DIR", output])
    assert line.startswith(f"error: OUTPUT_DIR {output}: cannot write there (")


@pytest.fixture
def own_dataset(tmp_path, monkeypatch):
    """(datasets root, dataset name, its annotation file): the sample's train split copied as a
    dataset of one's own, registered by name from $DETECTRON2_DATASETS."""
    from maskrcnnpp.data import sample_dir

    name = "damaged" + uuid.uuid4().hex[:8]
    folder = tmp_path / "datasets" / name
    shutil.copytree(os.path.join(sample_dir(), "images"), folder / "images")
    os.makedirs(folder / "annotations")
    annotations = folder / "annotations" / "instances_train.json"
    shutil.copy(os.path.join(sample_dir(), "annotations", "instances_train.json"), annotations)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    return name, annotations


def train_on(train_net, repo_root, tmp_path, capsys, name):
    return one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED),
                                              "DATASETS.TRAIN", f"('{name}_train',)", "DATASETS.TEST", "()",
                                              "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(tmp_path / "out")])


@pytest.mark.parametrize("field", ["segmentation", "bbox"])
def test_annotation_without_a_field_names_the_file_image_and_field(train_net, repo_root, tmp_path, capsys,
                                                                  own_dataset, field):
    name, path = own_dataset
    coco = json.loads(path.read_text())
    damaged = coco["annotations"][5]
    del damaged[field]
    path.write_text(json.dumps(coco))
    image = next(im["file_name"] for im in coco["images"] if im["id"] == damaged["image_id"])
    line = train_on(train_net, repo_root, tmp_path, capsys, name)
    assert line == f"error: {path}: annotation {damaged['id']!r} of image {image} has no '{field}'"
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_half_written_annotation_file_is_named(train_net, repo_root, tmp_path, capsys, own_dataset):
    name, path = own_dataset
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    line = train_on(train_net, repo_root, tmp_path, capsys, name)
    assert line.startswith(f"error: {path}: damaged annotation file, not valid JSON (")


def test_image_deleted_from_its_dataset_is_named_before_training(train_net, repo_root, tmp_path, capsys,
                                                                own_dataset):
    name, path = own_dataset
    image = json.loads(path.read_text())["images"][3]["file_name"]
    os.remove(path.parent.parent / "images" / image)
    line = train_on(train_net, repo_root, tmp_path, capsys, name)
    assert line == f"error: {path}: image {image} is missing: {path.parent.parent / 'images' / image} does not exist"
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_a_diverging_run_ends_in_one_line_naming_folder_and_iteration(train_net, repo_root, tmp_path, capsys):
    line = one_line_error(train_net, capsys, ["--config-file", os.path.join(repo_root, NESTED), *ON_SAMPLE[:2],
                                              "DATASETS.TEST", "()", "SOLVER.BASE_LR", "10000.0",
                                              "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", "8",
                                              "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path)])
    assert line.startswith(f"error: {tmp_path}: training diverged at iteration ")
    assert "lower SOLVER.BASE_LR" in line
