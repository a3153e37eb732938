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
