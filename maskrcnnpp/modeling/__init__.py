from .nested_decoder import CONNECTIVITIES, FUSES, NestedDecoder
from .nested_fpn import NestedFPN, build_resnet_nested_fpn_backbone

__all__ = [
    "CONNECTIVITIES",
    "FUSES",
    "NestedDecoder",
    "NestedFPN",
    "build_resnet_nested_fpn_backbone",
]
