"""Writing files atomically (temporary file in the same folder, then rename), and strict JSON."""
import contextlib
import json
import math
import os
import tempfile

__all__ = ["atomic_write", "replace_folder", "strict_json", "write_json_atomic"]


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_kwargs):
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` in one rename.

    On an exception (or a kill) ``path`` keeps its old content and the temporary
    file is removed (a kill can leave it behind, under a hidden ``.<name>.*.tmp``
    name that no reader looks for). ``mode`` is ``"w"`` or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_folder(new, target, parking):
    """Put the folder ``new`` in the place of ``target`` (which may not exist), by renames.

    The old ``target`` is first moved to ``parking`` (a path that does not exist yet, on the
    same file system; the caller removes it afterwards) and put back if the swap fails, so
    ``target`` is always either the old content or the new one, never half of each.
    """
    parked = os.path.exists(target)
    if parked:
        os.replace(target, parking)
    try:
        os.replace(new, target)
    except BaseException:
        if parked:
            os.replace(parking, target)
        raise


def strict_json(value):
    """``value`` with every NaN or infinite float replaced by None.

    COCO AP for an absent size range is NaN (e.g. APl on nuclei), which ``json.dump``
    writes as the bare token ``NaN``: valid for Python, rejected by strict readers.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json_atomic(path, content, indent=1):
    """Write ``content`` as strict JSON, atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(strict_json(content), f, indent=indent, allow_nan=False)
