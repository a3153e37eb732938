"""User mistakes (a bad path, key or value) reported as one line, not as a traceback.

Commands raise :class:`UserError` with a message that names the file or config
key and what is allowed, and :func:`run_command` turns it into one line on
stderr and exit code 2. Set ``MASKRCNNPP_DEBUG=1`` to get the full traceback
instead.
"""
import os
import sys

__all__ = ["ConfigError", "DEBUG_ENV", "EXIT_USER_ERROR", "MissingFileError", "UserError", "debug_enabled", "error_reason", "run_command"]

DEBUG_ENV = "MASKRCNNPP_DEBUG"
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's inputs, config, weights or output folder, not a bug.

    The message is complete on its own (it names the offending path or key).
    """


def debug_enabled():
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def error_reason(error: BaseException, limit: int = 240) -> str:
    """The first line of ``error``'s message (its type name when that line is empty), cut to
    at most ``limit`` characters with "..." (third-party messages can be pages long)."""
    lines = str(error).splitlines()
    text = lines[0] if lines and lines[0].strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_command(function, *args, **kwargs):
    """``function(*args, **kwargs)``; a UserError becomes ``error: <message>`` and exit code 2."""
    try:
        return function(*args, **kwargs)
    except UserError as e:
        if debug_enabled():
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


class ConfigError(UserError, ValueError):
    """A config key with a value that is not allowed; the message names the key.

    Also a ValueError, as yacs and Detectron2 raise for bad values.
    """


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named (or a prepared dataset) does not exist; the message names it."""
