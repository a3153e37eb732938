"""Expanding the command line's PATH | DIR | GLOB inputs into image files and output names."""
import glob
import os

from .image_io import IMAGE_EXTENSIONS

__all__ = ["expand_inputs", "output_stems"]


def expand_inputs(specs):
    """Image paths named by ``specs`` (files, folders, glob patterns), in order, without repeats.

    Returns ``(paths, errors)``: one one-line error for each spec that names no
    image (a missing path, an empty folder, a pattern matching nothing).
    Folders are not searched recursively; in folders and patterns only files
    with an image extension are taken, while an explicitly named file is always
    tried (an unreadable one fails later, on its own).
    """
    paths, errors, seen = [], [], set()
    for spec in specs:
        found, error = _expand_one(spec)
        if error:
            errors.append(error)
        for path in found:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                paths.append(path)
    return paths, errors


def _expand_one(spec):
    if os.path.isdir(spec):
        found = sorted(os.path.join(spec, name) for name in os.listdir(spec))
        found = [p for p in found if _is_image_file(p)]
        return found, None if found else f"{spec}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})"
    if os.path.isfile(spec):
        return [spec], None
    if glob.has_magic(spec):
        found = [p for p in sorted(glob.glob(spec)) if _is_image_file(p)]
        return found, None if found else f"{spec}: pattern matches no images"
    return [], f"{spec}: no such file or folder"


def _is_image_file(path):
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def output_stems(paths):
    """A distinct output name (file name without extension) per input path.

    Inputs from different folders may share a name (a/img.png, b/img.png);
    later ones get ``_2``, ``_3``, ... so that no output overwrites another.
    """
    stems, taken = [], set()
    for path in paths:
        base = os.path.splitext(os.path.basename(path))[0]
        stem, k = base, 1
        while stem.lower() in taken:  # case-insensitive file systems
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems
