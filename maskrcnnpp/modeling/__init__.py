from .nested_decoder import CONNECTIVITIES, FUSES, NestedDecoder
from .nested_fpn import NestedFPN, build_resnet_nested_fpn_backbone
from .plain_encoder import PlainEncoder
from .resnet_encoder import ResNetEncoder, build_resnet_encoder
from .unetpp import SemanticUNetPlusPlus

__all__ = [
    "CONNECTIVITIES",
    "FUSES",
    "NestedDecoder",
    "NestedFPN",
    "PlainEncoder",
    "ResNetEncoder",
    "SemanticUNetPlusPlus",
    "build_resnet_encoder",
    "build_resnet_nested_fpn_backbone",
]
