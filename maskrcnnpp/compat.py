"""Guards that let the pure-Python Detectron2 v0.6 run on current libraries.

The registry's Detectron2 v0.6 has no compiled ``detectron2._C`` and still uses
names that numpy and Pillow have since removed. Each guard below is applied
only when the installed Detectron2 needs it (an official build with ``_C`` and
fixed sources needs none) and never edits Detectron2's files.
``install_guards()`` must run before ``detectron2.layers`` is first imported;
``import maskrcnnpp`` does that.
"""
import importlib.util
import os
import sys
import types
import warnings

__all__ = ["install_guards", "applied_guards", "has_compiled_ops"]

_APPLIED = []
# Aliases numpy 1.24 removed and Detectron2 v0.6 still uses (e.g. ``np.int`` in
# ``data/build.py``'s class histogram, on every training run).
_NUMPY_ALIASES = {"int": int, "float": float, "bool": bool, "object": object, "str": str}
# Modules of Detectron2 v0.6 that import ``detectron2._C`` at module level.
_MODULES_NEEDING_C = (
    "detectron2.layers",
    "detectron2.evaluation.fast_eval_api",
)


def has_compiled_ops() -> bool:
    """Whether this Detectron2 was built with its compiled ops (``detectron2._C``).

    Without them, deformable convolution, rotated boxes and the fast COCOeval
    (``COCOEvaluator(use_fast_impl=True)``) cannot run.
    """
    if importlib.util.find_spec("detectron2") is None:
        return False
    return importlib.util.find_spec("detectron2._C") is not None


def applied_guards():
    """Names of the guards this process needed, in the order they were applied."""
    return list(_APPLIED)


def _detectron2_source_mentions(relative_path, text):
    """Whether a file of the installed Detectron2 contains ``text``, read without importing it
    (finding a submodule's spec would import its package, the very import being guarded)."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return False
    path = os.path.join(list(spec.submodule_search_locations)[0], relative_path)
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        return text in f.read()


def _guard_pillow_linear():
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return
    if not _detectron2_source_mentions("data/transforms/transform.py", "Image.LINEAR"):
        return
    # Pillow 10 dropped LINEAR, an old name of BILINEAR that v0.6 uses as a default argument.
    Image.LINEAR = Image.BILINEAR
    _APPLIED.append("Pillow Image.LINEAR")


def _guard_numpy_aliases():
    import numpy as np

    missing = [name for name in _NUMPY_ALIASES if name not in np.__dict__]
    if not missing:
        return
    if not _detectron2_source_mentions("data/build.py", "np.int)"):
        return
    for name in missing:
        setattr(np, name, _NUMPY_ALIASES[name])
    _APPLIED.append("numpy aliases " + ", ".join("np." + n for n in missing))


def _missing_op(name):
    def fail(*args, **kwargs):
        raise RuntimeError(
            f"detectron2._C.{name} is not available: this Detectron2 was installed without its "
            "compiled ops. Mask R-CNN / Mask R-CNN++ do not need them; deformable convolution, "
            "rotated boxes and COCOEvaluator(use_fast_impl=True) do. Install the official "
            "Detectron2 build to use those."
        )

    return fail


def _stub_attribute(name):
    if name.startswith("__"):  # introspection (inspect, pickle) must see a plain module
        raise AttributeError(name)
    return _missing_op(name)


def _guard_missing_compiled_ops():
    if importlib.util.find_spec("detectron2") is None or has_compiled_ops():
        return
    if all(m in sys.modules for m in _MODULES_NEEDING_C):
        return
    # A stand-in lives in sys.modules only while the modules that import _C at
    # module level load; they keep it and fail clearly if an op is called.
    # Removing it afterwards keeps `import detectron2._C` honest, so
    # Detectron2's environment report still says _C is not built.
    stub = types.ModuleType("detectron2._C")
    stub.__getattr__ = _stub_attribute
    import detectron2

    sys.modules["detectron2._C"] = stub
    try:
        for module in _MODULES_NEEDING_C:
            importlib.import_module(module)
    finally:
        del sys.modules["detectron2._C"]
        if getattr(detectron2, "_C", None) is stub:
            del detectron2._C
    _APPLIED.append("detectron2._C stand-in")


# Third-party warnings a user of the commands cannot act on, each silenced by its message and the
# module it is attributed to (pytest.ini filters the same ones in the tests): a new one still shows.
QUIET_WARNINGS = (
    (r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit\._script"),  # fvcore's import
    (r"torch\.meshgrid: in an upcoming release", UserWarning, r"torch\.functional"),  # Detectron2's anchors
    (r"The given NumPy array is not writable", UserWarning, r"detectron2\.data\.detection_utils"),
    (r"The given NumPy array is not writable", UserWarning, r"fvcore\.transforms\.transform"),
)


def quiet_known_warnings():
    """Ignore exactly the QUIET_WARNINGS (message and module both must match)."""
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def install_guards():
    """Apply the guards this Detectron2 needs, and quiet the known third-party warnings; safe to
    call more than once."""
    quiet_known_warnings()
    _guard_pillow_linear()
    _guard_numpy_aliases()
    _guard_missing_compiled_ops()
    return applied_guards()
