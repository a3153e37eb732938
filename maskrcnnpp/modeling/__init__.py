from .mask_head import MaskRCNNMatmulUpsampleHead, upsample_and_predict
from .nested_decoder import CONNECTIVITIES, FUSES, NestedDecoder, build_nested_decoder
from .nested_fpn import NestedFPN, build_resnet_nested_fpn_backbone
from .plain_encoder import PlainEncoder, build_plain_encoder
from .resnet_encoder import ResNetEncoder, build_resnet_encoder
from .unetpp import SemanticUNetPlusPlus

__all__ = [
    "CONNECTIVITIES",
    "FUSES",
    "MaskRCNNMatmulUpsampleHead",
    "NestedDecoder",
    "NestedFPN",
    "PlainEncoder",
    "ResNetEncoder",
    "SemanticUNetPlusPlus",
    "build_nested_decoder",
    "build_plain_encoder",
    "build_resnet_encoder",
    "build_resnet_nested_fpn_backbone",
    "upsample_and_predict",
]
