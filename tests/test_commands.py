"""The user-facing commands: console scripts, their tools/ wrappers, one-line errors, the demo."""
import ast
import glob
import importlib
import json
import os
import runpy
import subprocess
import sys

import pytest

from maskrcnnpp import demo
from maskrcnnpp.data import prepare_dsb2018
from maskrcnnpp.evaluation import gt_as_predictions
from maskrcnnpp.predict import cli as predict_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Kept readable on their own: Detectron2's one-file train_net.py and lazyconfig_train_net.py, and the
# installer that runs before the package exists.
STANDALONE_TOOLS = {"train_net.py", "lazyconfig_train_net.py", "install_detectron2.py"}


def console_scripts():
    """{command: "module:function"} as declared in setup.py."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return dict(item.split("=", 1) for item in ast.literal_eval(value))
    raise AssertionError("setup.py declares no console_scripts")


def wrapper_tools():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "tools", "*.py")))
    return [name for name in names if name not in STANDALONE_TOOLS]


def test_each_console_script_has_a_main_and_a_tools_wrapper_that_runs_it():
    scripts = console_scripts()
    assert {"maskrcnnpp-demo", "maskrcnnpp-predict", "maskrcnnpp-prepare-dsb2018"} <= set(scripts)
    for command, target in scripts.items():
        module_name, function = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), function)), target
        wrapper = os.path.join(REPO, "tools", command[len("maskrcnnpp-"):].replace("-", "_") + ".py")
        assert f"from {module_name} import {function}" in open(wrapper, encoding="utf-8").read(), wrapper


def inserts_into_sys_path(path):
    """Whether the file calls ``sys.path.insert``."""
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        func = getattr(node, "func", None)
        if isinstance(func, ast.Attribute) and func.attr == "insert" and isinstance(func.value, ast.Attribute):
            if func.value.attr == "path" and getattr(func.value.value, "id", None) == "sys":
                return True
    return False


def test_sys_path_is_changed_only_by_tools_wrappers():
    changers = set()
    for path in glob.glob(os.path.join(REPO, "**", "*.py"), recursive=True):
        relative = os.path.relpath(path, REPO)
        if relative.split(os.sep)[0] not in {".venv", "build", "output"} and inserts_into_sys_path(path):
            changers.add(relative)
    allowed = {os.path.join("tools", name) for name in wrapper_tools()}
    allowed |= {os.path.join("tools", name) for name in ("train_net.py", "lazyconfig_train_net.py")}
    assert changers and changers <= allowed


@pytest.mark.parametrize("name", wrapper_tools())
def test_tools_wrapper_is_thin_and_answers_help(name, monkeypatch, capsys):
    path = os.path.join(REPO, "tools", name)
    source = open(path, encoding="utf-8").read()
    defined = [n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defined == [], f"{name} should only import and run a main from the package"
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(path, run_name="__main__")
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "main, argv",
    [
        (demo.main, ["--config-file", "{missing}"]),
        (predict_cli.main, ["--config-file", "{missing}", "--input", "image.png"]),
        (prepare_dsb2018.main, ["--source", "{missing}"]),
    ],
    ids=["demo", "predict", "prepare-dsb2018"],
)
def test_missing_file_is_a_one_line_error_with_exit_2(main, argv, tmp_path, capsys):
    missing = str(tmp_path / "no_such_file.yaml")
    assert main([a.format(missing=missing) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and missing in err[0] and "error" in err[0], err


def test_demo_unknown_config_key_is_a_one_line_error(capsys):
    assert demo.main(["MODEL.NO_SUCH_KEY", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MODEL.NO_SUCH_KEY" in err[0], err


def test_unregistered_dataset_is_a_one_line_error(capsys):
    assert gt_as_predictions.main(["dsb2018_no_such_split"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'dsb2018_no_such_split' is not registered" in err[0], err
    assert "dsb2018_sample_val" in err[0]


def test_unprepared_dataset_from_another_folder_is_a_one_line_error(tmp_path):
    # A fresh process run as a user would, from outside the checkout: the wrapper finds the
    # package, and the datasets root ($DETECTRON2_DATASETS) is read when registering.
    root = str(tmp_path / "empty_root")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(DETECTRON2_DATASETS=root, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "evaluate_gt_as_predictions.py"), "dsb2018_val"],
        env=env, capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    # (Lines before it may be library warnings printed while importing Detectron2.)
    err = result.stderr.strip().splitlines()
    assert [line for line in err if "error:" in line] == err[-1:], err
    assert os.path.join(root, "dsb2018", "annotations", "instances_val.json") in err[-1]
    assert "maskrcnnpp-prepare-dsb2018 --source" in err[-1]


def test_demo_trains_evaluates_once_and_predicts(tmp_path, monkeypatch, capsys):
    tested = []
    real_test = demo.DemoTrainer.test.__func__

    def counting_test(cls, cfg, model, evaluators=None):
        tested.append(cfg.DATASETS.TEST)
        return real_test(cls, cfg, model, evaluators)

    monkeypatch.setattr(demo.DemoTrainer, "test", classmethod(counting_test))
    out = tmp_path / "demo"
    # Plumbing only: a one-iteration model would send the diameter estimate to its extremes
    # (hundreds of tiles of junk), so this run resizes by image size, at 128 px, and keeps 20 of its
    # junk detections per image (hundreds cost minutes to outline and score).
    code = demo.main([
        "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "1", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "INPUT.SCALE_POLICY", "image_size", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256", "DATALOADER.NUM_WORKERS", "0",
        "TEST.DETECTIONS_PER_IMAGE", "20",
    ])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert tested == [("dsb2018_sample_val",)]
    assert "dsb2018_sample_val: fg_iou " in printed and "segm AP" in printed
    assert len(os.listdir(out / "predictions" / "labels")) == 4
    assert (out / "predictions" / "coco_instances_results.json").is_file()
    # The evaluation still goes through the EvalHook, so metrics.json logs it as before.
    last = json.loads((out / "metrics.json").read_text().strip().splitlines()[-1])
    assert "nuclei/fg_iou" in last
