"""One run per OUTPUT_DIR: an exclusive lock held while a command trains or evaluates there.

The lock is an ``flock`` on ``OUTPUT_DIR/run.lock``: the kernel releases it when its process
ends, however it ends, so a killed run never leaves it stuck. The file holds the owner's
process id and start time, for the message a second run gets. Holding the lock also means
no other run of this host is writing there, so the hidden temporaries that a kill left
behind during an atomic write (``.model_0000199.pth.abcd1234.tmp``) can be removed.
"""
import datetime
import fcntl
import logging
import os
import re
import socket

from ..errors import UserError, error_reason

__all__ = ["LOCK_NAME", "OutputDirInUse", "hold_output_dir"]

LOCK_NAME = "run.lock"
# utils.json_io.atomic_write's temporaries: ".<name>.<8 random characters>.tmp"
_STALE_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")

logger = logging.getLogger(__name__)


class OutputDirInUse(UserError):
    """Another live process holds the folder's lock."""


def hold_output_dir(path, key="OUTPUT_DIR"):
    """Create ``path`` if needed and lock it for this process; returns the open lock file (keep
    it open as long as the run: closing it, or the process ending, releases the lock).

    Raises UserError (naming ``key`` and the folder) when the folder cannot be created or
    written, and OutputDirInUse naming the process that holds it.
    """
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        os.makedirs(path, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as e:
        raise UserError(f"{key} {path}: cannot write there ({error_reason(e)})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise OutputDirInUse(
            f"{key} {path} is in use by another run ({owner}); wait for it to end or choose another {key}"
        ) from None
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    handle.write(f"process {os.getpid()} on {socket.gethostname()}, started {started}\n")
    handle.flush()
    _remove_stale_temporaries(path)
    return handle


def _remove_stale_temporaries(path):
    removed = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if _STALE_TEMPORARY.match(name) and os.path.isfile(full) and not os.path.islink(full):
            os.unlink(full)
            removed.append(name)
    if removed:
        logger.warning("%s: removed %d temporary file(s) a killed run left behind (%s)",
                       path, len(removed), ", ".join(removed))
