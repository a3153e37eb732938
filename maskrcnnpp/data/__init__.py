"""Nuclei data: DSB2018 preparation from the Kaggle layout, import of image + label image folders
(``import_labels.py``), and Detectron2 registration.

Importing this package registers the ``dsb2018_*`` datasets, every imported ``NAME_<split>``
under $DETECTRON2_DATASETS, and their ``_grey`` / ``_colour`` subsets (see ``datasets.py``).
"""
from . import datasets  # noqa: F401  (registration side effect)
from .datasets import register_dsb2018, register_dsb2018_sample, register_own_datasets, sample_dir
from .dsb2018_split import builtin_split_path, load_split

__all__ = ["register_dsb2018", "register_dsb2018_sample", "register_own_datasets", "sample_dir", "builtin_split_path", "load_split"]
