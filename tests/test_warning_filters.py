"""pytest.ini: warnings from maskrcnnpp fail the test; third-party ones are filtered narrowly."""
import warnings

import pytest

COPY_KEYWORD = "__array__ implementation doesn't accept a copy keyword, so passing copy=False failed."


def warn_from(module, message, category):
    warnings.warn_explicit(message, category, module.replace(".", "/") + ".py", 1, module=module)


def test_a_warning_raised_from_maskrcnnpp_is_an_error():
    with pytest.raises(UserWarning, match="raised from maskrcnnpp"):
        warn_from("maskrcnnpp.data.segmentation", "raised from maskrcnnpp", UserWarning)


def test_third_party_warnings_are_filtered_by_module_and_message():
    with warnings.catch_warnings(record=True) as caught:
        warn_from("pycocotools.mask", COPY_KEYWORD, DeprecationWarning)
        warn_from("some.other.module", COPY_KEYWORD, DeprecationWarning)
        warn_from("pycocotools.mask", "a new pycocotools deprecation", DeprecationWarning)
    assert [(str(w.message), w.filename) for w in caught] == [
        (COPY_KEYWORD, "some/other/module.py"),
        ("a new pycocotools deprecation", "pycocotools/mask.py"),
    ]


def test_commands_do_not_print_the_known_third_party_warnings(repo_root):
    import subprocess
    import sys

    for tool in ("train_net.py", "predict.py"):
        result = subprocess.run([sys.executable, f"tools/{tool}", "--help"], cwd=repo_root, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0 and "usage:" in result.stdout
        assert "Warning" not in result.stderr, result.stderr[-1000:]


def test_quieted_warnings_are_matched_by_module_too():
    from maskrcnnpp.compat import quiet_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_warnings()
        warn_from("torch.jit._script", "`torch.jit.script` is deprecated. Please switch to `torch.compile`", FutureWarning)
        warn_from("my.own.module", "`torch.jit.script` is deprecated. Please switch to `torch.compile`", FutureWarning)
    assert [w.filename for w in caught] == ["my/own/module.py"]
