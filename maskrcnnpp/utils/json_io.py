"""Result files: strict JSON, written atomically."""
import json
import math
import os
import tempfile


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
    """Write ``content`` as strict JSON through a temporary file in the same folder, then rename it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(strict_json(content), f, indent=indent, allow_nan=False)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
