"""Mask R-CNN++ for Detectron2.

Importing this package registers the nested-FPN backbone, the semantic UNet++
meta-architecture and the DSB2018 nuclei datasets in Detectron2's registries.
"""
from .compat import install_guards

install_guards()  # before any detectron2.layers import, see compat.py

from .config import add_maskrcnnpp_config  # noqa: E402
from . import data, evaluation, model_zoo, modeling  # noqa: E402,F401  (registration side effects)

__all__ = ["add_maskrcnnpp_config"]
__version__ = "0.1.0"
