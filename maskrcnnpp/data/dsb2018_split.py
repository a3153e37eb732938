"""The committed DSB2018 train/val/test split, and how to load it.

Made once by ``datasets/make_dsb2018_split.py`` (stratified by modality and
image size, seed 2018; see the file's ``method``).
"""
import json
import os

__all__ = ["SPLIT_NAMES", "PAPER_SIZES", "builtin_split_path", "load_split", "split_names"]

SPLIT_NAMES = ("train", "val", "test")
PAPER_SIZES = {"train": 335, "val": 134, "test": 201}  # UNet++ paper (Zhou et al., TMI 2019)


def builtin_split_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin", "dsb2018_split.json")


def load_split(split=None):
    """A split as a dict with an id list per split name.

    ``split``: None (the committed split), a path to a split JSON, or a mapping
    ``{split name: [Kaggle ids]}`` (returned as is, e.g. for tests).
    """
    if split is None:
        split = builtin_split_path()
    if isinstance(split, (str, os.PathLike)):
        with open(split, encoding="utf-8") as f:
            split = json.load(f)
    return split


def split_names(split):
    """The split names a split mapping defines, in the canonical order first."""
    known = [n for n in SPLIT_NAMES if n in split]
    extra = [n for n, v in split.items() if n not in SPLIT_NAMES and isinstance(v, list) and n != "fixed_removed_ids"]
    return known + extra
