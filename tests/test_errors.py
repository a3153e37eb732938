"""One-line reasons of exceptions, for error messages that name a file."""
from maskrcnnpp.errors import error_reason


def test_the_reason_is_the_first_line_of_the_message():
    assert error_reason(OSError("cannot identify image file\n  at offset 12\n")) == "cannot identify image file"


def test_an_empty_message_gives_the_exception_type():
    assert error_reason(KeyError()) == "KeyError"
    assert error_reason(ValueError("\nsecond line only")) == "ValueError"


def test_long_reasons_are_cut_to_the_limit():
    reason = error_reason(RuntimeError("x" * 1000), limit=20)
    assert reason == "x" * 17 + "..." and len(reason) == 20
    assert error_reason(RuntimeError("y" * 240)) == "y" * 240
