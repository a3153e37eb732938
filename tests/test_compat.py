"""The guards that let the pure-Python Detectron2 v0.6 run on current numpy/Pillow."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maskrcnnpp import compat

HAS_COMPILED_OPS = compat.has_compiled_ops()
needs_pure_python = pytest.mark.skipif(HAS_COMPILED_OPS, reason="this Detectron2 has compiled ops")


def test_guards_applied_exactly_when_this_detectron2_needs_them():
    applied = compat.install_guards()
    assert ("detectron2._C stand-in" in applied) == (not HAS_COMPILED_OPS)
    if "Pillow Image.LINEAR" in applied:
        assert compat._detectron2_source_mentions("data/transforms/transform.py", "Image.LINEAR")
        assert Image.LINEAR == Image.BILINEAR
    # Idempotent: a second call applies nothing new.
    assert compat.install_guards() == applied


def test_source_check_reads_files_without_importing():
    assert compat._detectron2_source_mentions("data/build.py", "def build_detection_train_loader")
    assert not compat._detectron2_source_mentions("data/build.py", "no such text anywhere")
    assert not compat._detectron2_source_mentions("no/such/file.py", "x")


def test_detectron2_training_path_runs():
    # These raise on numpy >= 1.24 / Pillow >= 10 without the guards, with v0.6.
    from detectron2.data.build import print_instances_class_histogram
    from detectron2.data.transforms import ExtentTransform

    print_instances_class_histogram([{"annotations": [{"category_id": 0}]}], ["nucleus"])
    assert ExtentTransform((0, 0, 4, 4), (2, 2)).interp == Image.BILINEAR


@needs_pure_python
def test_without_guards_v06_cannot_even_import_its_layers():
    code = "import detectron2.layers"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "_C" in result.stderr


@needs_pure_python
def test_missing_compiled_op_fails_with_a_clear_message():
    from detectron2.layers import deform_conv

    with pytest.raises(RuntimeError, match="compiled ops"):
        deform_conv._C.deform_conv_forward()


@needs_pure_python
def test_stand_in_is_not_left_importable():
    # Detectron2's environment report must still say that _C is not built.
    with pytest.raises(ImportError):
        import detectron2._C  # noqa: F401
    from detectron2.utils.collect_env import collect_env_info

    assert "not built" in collect_env_info()


def test_has_compiled_ops_is_false_without_detectron2(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_detectron2(name, *args):
        return None if name.split(".")[0] == "detectron2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_detectron2)
    assert compat.has_compiled_ops() is False


def test_has_compiled_ops_tells_whether_detectron2_C_imports():
    try:
        importlib.import_module("detectron2._C")
    except ImportError:
        importable = False
    else:
        importable = True
    assert compat.has_compiled_ops() == importable


def _remove_numpy_aliases(monkeypatch):
    for name, builtin in compat._NUMPY_ALIASES.items():
        if np.__dict__.get(name) is builtin:  # put there by the guard, not numpy's own
            monkeypatch.delattr(np, name)
    monkeypatch.setattr(compat, "_APPLIED", [])


def test_numpy_aliases_are_not_added_for_a_detectron2_that_does_not_use_them(monkeypatch):
    _remove_numpy_aliases(monkeypatch)
    monkeypatch.setattr(compat, "_detectron2_source_mentions", lambda path, text: False)
    compat.install_guards()
    assert "int" not in np.__dict__ and "float" not in np.__dict__
    assert not any(g.startswith("numpy aliases") for g in compat.applied_guards())


def test_numpy_aliases_are_restored_for_a_detectron2_that_uses_them(monkeypatch):
    _remove_numpy_aliases(monkeypatch)
    monkeypatch.setattr(compat, "_detectron2_source_mentions", lambda path, text: text == "np.int)")
    compat.install_guards()
    assert np.int is int and np.float is float
    assert "numpy aliases np.int, np.float" in " ".join(compat.applied_guards())


def test_guards_run_before_any_detectron2_import_in_a_fresh_process():
    code = (
        "import json, maskrcnnpp, detectron2.modeling, detectron2.evaluation, detectron2.engine;"
        "print(json.dumps(maskrcnnpp.compat.applied_guards()))"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert result.returncode == 0, result.stderr[-2000:]
    # A fresh process needs, and applies, the same guards as this one (importing maskrcnnpp first).
    assert json.loads(result.stdout.splitlines()[-1]) == compat.applied_guards()
