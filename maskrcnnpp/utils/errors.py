"""Exceptions turned into short, one-line reasons for user-facing error messages."""

__all__ = ["error_reason"]


def error_reason(error: BaseException, limit: int = 240) -> str:
    """The first line of ``error``'s message (its type name when the message is empty),
    cut to at most ``limit`` characters with "..." (third-party messages can be pages long)."""
    lines = str(error).splitlines()
    text = lines[0] if lines and lines[0].strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
