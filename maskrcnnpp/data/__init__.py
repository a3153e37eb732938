"""DSB2018 nuclei data: preparation from the Kaggle layout and Detectron2 registration.

Importing this package registers the ``dsb2018_*`` datasets (see ``datasets.py``).
"""
from . import datasets  # noqa: F401  (registration side effect)
from .datasets import register_dsb2018, register_dsb2018_sample, sample_dir
from .dsb2018_split import builtin_split_path, load_split

__all__ = ["register_dsb2018", "register_dsb2018_sample", "sample_dir", "builtin_split_path", "load_split"]
