"""Temporary folders that name their owner (host and PID), so a later run can remove those
of runs that were killed, and never those of a run still working."""
import os
import re
import shutil
import socket
import tempfile

__all__ = ["make_owned_temp_dir", "remove_stale_temp_dirs", "pid_alive"]


def _host():
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def make_owned_temp_dir(parent, prefix):
    """A new folder ``<parent>/<prefix><host>-<pid>-<random>``."""
    return tempfile.mkdtemp(prefix=f"{prefix}{_host()}-{os.getpid()}-", dir=parent)


def pid_alive(pid):
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def remove_stale_temp_dirs(parent, prefix):
    """Remove the folders of ``parent`` named ``<prefix><host>-<pid>-...`` whose process is gone.

    Returns ``(removed, unknown)``: the folder names removed, and those left alone
    because their owner cannot be checked (another host, or no owner in the name).
    """
    removed, unknown = [], []
    if not os.path.isdir(parent):
        return removed, unknown
    owner = re.compile(re.escape(prefix) + r"(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[^-]+$")
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        if not name.startswith(prefix) or not os.path.isdir(path) or os.path.islink(path):
            continue
        match = owner.match(name)
        if match is None or match["host"] != _host():
            unknown.append(name)
        elif not pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed, unknown
