"""Read the Kaggle ``stage1_train`` layout from a zip archive or a folder.

Layout: ``<image_id>/images/<image_id>.png`` and ``<image_id>/masks/*.png``,
optionally below one common top folder (e.g. ``stage1_train/``).
"""
import os
import zipfile
from collections import defaultdict

__all__ = ["KaggleSource", "LayoutError", "EXPECTED_LAYOUT"]

EXPECTED_LAYOUT = (
    "expected the Kaggle stage1_train layout: <image_id>/images/<image_id>.png and "
    "<image_id>/masks/*.png (one binary PNG per nucleus), as a zip or a folder"
)
_IGNORED_TOP = ("__MACOSX",)


class LayoutError(Exception):
    """The source is missing, unreadable, or not in the Kaggle layout."""


class KaggleSource:
    """Image ids and file contents of a Kaggle-layout zip or folder.

    ``entries[image_id]`` maps ``"images"`` / ``"masks"`` to sorted lists of PNG
    paths (a missing folder has no key), so callers can report what is absent.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._zip = None
        if os.path.isdir(self.path):
            files = self._list_folder()
        elif os.path.isfile(self.path):
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile:
                if _starts_like_a_zip(self.path):
                    raise LayoutError(f"{self.path}: damaged or incomplete zip archive (its table of contents "
                                      "is missing: an interrupted download or copy?); fetch it again") from None
                raise LayoutError(f"{self.path} is neither a folder nor a zip archive; {EXPECTED_LAYOUT}") from None
            files = [n for n in self._zip.namelist() if not n.endswith("/")]
            # Folder entries count too: an empty masks/ folder is "no masks", not "no masks/ folder".
            files += [n + "." for n in self._zip.namelist() if n.endswith("/")]
        else:
            raise LayoutError(f"source not found: {self.path}")
        self.entries = self._index(files)

    def _list_folder(self):
        files = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            files += [prefix + f for f in filenames]
            files += [prefix + d + "/." for d in dirnames]
        return files

    def _index(self, files):
        parts = [f.split("/") for f in files]
        parts = [p for p in parts if p[0] not in _IGNORED_TOP and not p[0].startswith(".")]
        top = self._find_top(parts)
        entries = defaultdict(dict)
        for p in parts:
            if p[: len(top)] != top or len(p) < len(top) + 2:
                continue  # files beside the image folders (e.g. a labels CSV)
            image_id, rest = p[len(top)], p[len(top) + 1 :]
            entries[image_id]  # an image folder, even if it holds nothing usable
            if rest[0] in ("images", "masks") and len(rest) >= 2:
                pngs = entries[image_id].setdefault(rest[0], [])
                if len(rest) == 2 and rest[1].lower().endswith(".png"):
                    pngs.append("/".join(p))
        for kinds in entries.values():
            for paths in kinds.values():
                paths.sort()
        return dict(sorted(entries.items()))

    def _find_top(self, parts):
        # The top folder is what precedes "<id>/images" or "<id>/masks"; it must be the same everywhere.
        tops = {tuple(p[: i - 1]) for p in parts for i in range(1, len(p) - 1) if p[i] in ("images", "masks")}
        if len(tops) != 1:
            what = "no <image_id>/images or <image_id>/masks folders" if not tops else "images at several depths"
            raise LayoutError(f"{self.path}: found {what}; {EXPECTED_LAYOUT}")
        return list(tops.pop())

    def read(self, path):
        """Bytes of one file, by the path found in ``entries``."""
        if self._zip is not None:
            return self._zip.read(path)
        with open(os.path.join(self.path, *path.split("/")), "rb") as f:
            return f.read()

    def close(self):
        if self._zip is not None:
            self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _starts_like_a_zip(path):
    """Whether the file begins as a zip archive does (a local file header)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
