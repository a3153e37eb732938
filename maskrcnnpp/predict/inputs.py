"""The inputs of a prediction: image paths from the command line and the output folder.
Images are read as 8-bit RGB by ``data/images.py`` (importing labels reads them too)."""
import glob
import os
import tempfile

from ..data.images import HIGH_DEPTH_PERCENTILES, read_image_rgb8, rescale_to_uint8, to_rgb8
from ..errors import UserError

__all__ = [
    "DEFAULT_FORMATS",
    "HIGH_DEPTH_PERCENTILES",
    "IMAGE_EXTENSIONS",
    "OUTPUT_FORMATS",
    "OutputLayout",
    "expand_inputs",
    "output_stems",
    "parse_formats",
    "prepare_output_dir",
    "read_image_rgb8",
    "rescale_to_uint8",
    "to_rgb8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


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




# What prediction can write per image (and, for "coco", one results JSON for the batch).
OUTPUT_FORMATS = ("overlay", "labels", "coco", "imagej", "qupath")
DEFAULT_FORMATS = OUTPUT_FORMATS


class OutputLayout:
    """``<root>/overlays/<stem>.png``, ``<root>/labels/<stem>.png``, ``<root>/imagej/<stem>.zip``,
    ``<root>/qupath/<stem>.geojson`` and one results JSON; ``formats`` says which are written."""

    def __init__(self, root, formats=DEFAULT_FORMATS):
        self.root = root
        self.formats = tuple(formats)
        self.overlays = os.path.join(root, "overlays")
        self.labels = os.path.join(root, "labels")
        self.imagej = os.path.join(root, "imagej")
        self.qupath = os.path.join(root, "qupath")

    def folders(self):
        """The folders of the chosen formats (the COCO JSON lies in the root)."""
        by_format = {"overlay": self.overlays, "labels": self.labels, "imagej": self.imagej, "qupath": self.qupath}
        return [by_format[f] for f in OUTPUT_FORMATS if f in self.formats and f in by_format]

    def overlay_path(self, stem):
        return os.path.join(self.overlays, stem + ".png")

    def label_path(self, stem):
        return os.path.join(self.labels, stem + ".png")

    def imagej_path(self, stem):
        return os.path.join(self.imagej, stem + ".zip")

    def qupath_path(self, stem):
        return os.path.join(self.qupath, stem + ".geojson")


def parse_formats(text, option="--formats"):
    """``"overlay,labels"`` (or ``"all"``) as a tuple of OUTPUT_FORMATS; UserError otherwise."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return OUTPUT_FORMATS
    unknown = [n for n in names if n not in OUTPUT_FORMATS]
    if unknown or not names:
        raise UserError(f"{option} {text!r}: choose from {','.join(OUTPUT_FORMATS)} (comma-separated) or all")
    return tuple(f for f in OUTPUT_FORMATS if f in names)


def prepare_output_dir(root, formats=DEFAULT_FORMATS):
    """Create the folders and prove they are writable, before any model is built."""
    layout = OutputLayout(root, formats)
    for folder in [layout.root] + layout.folders():
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            reason = e.strerror or str(e)
            raise UserError(f"{folder}: output folder cannot be written ({reason})") from None
    return layout
