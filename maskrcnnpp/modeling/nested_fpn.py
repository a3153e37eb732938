"""Mask R-CNN++'s backbone: Detectron2's FPN with the nested (UNet++) grid as top-down path.

A drop-in for Detectron2's ``build_resnet_fpn_backbone``: the same output names
(p2..p6), strides, channels and ``size_divisibility``, the same lateral and
output convs and p6 ``top_block``, so the RPN and ROI heads are unchanged.
FPN's single top-down path is replaced by the grid of ``NestedDecoder``; output
level i is the last node of row i of the grid.
"""
import math
from typing import Dict, List, Optional

import torch
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from fvcore.nn import weight_init
from torch import nn

from ..errors import ConfigError
from .layers import norm_factory
from .nested_decoder import (
    NORMS,
    build_nested_decoder,
    check_choice,
    check_decoder_config,
    check_group_norm_config,
    node_name,
)

__all__ = [
    "NESTED_FPN_BUILDERS",
    "NestedFPN",
    "build_resnet_nested_fpn_backbone",
    "build_retinanet_resnet_nested_fpn_backbone",
]

# The registered backbones configured by MODEL.NESTED_FPN.
NESTED_FPN_BUILDERS = ("build_resnet_nested_fpn_backbone", "build_retinanet_resnet_nested_fpn_backbone")


class NestedFPN(Backbone):
    """Detectron2's FPN with the nested grid as top-down path.

    Bottom-up features -> lateral 1x1 convs -> NestedDecoder -> 3x3 output convs
    (p2..p5), then ``top_block`` (p6) as in FPN.
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: List[str],
        node_channels: List[int],
        out_channels: int,
        *,
        norm: str = "",
        gn_groups: int = 32,
        gn_min_channels: int = 0,
        top_block: Optional[nn.Module] = None,
        connectivity: str = "unet++",
        fuse: str = "concat",
        block: str = "fuse_conv",
        upsample: str = "nearest",
    ):
        """
        Args:
            bottom_up, in_features, out_channels, top_block: as for Detectron2's FPN.
            node_channels: width of the grid's nodes at each level, finest first.
            norm: "", "GN", "BN" or "SyncBN" for the laterals, nodes and output convs.
            gn_groups: groups of each GroupNorm when norm is "GN".
            gn_min_channels: if > 0, narrower layers get fewer groups, keeping at least this
                many channels in each.
            connectivity, fuse, block, upsample: the grid's, see ``build_nested_decoder``.
        """
        super().__init__()
        input_shapes = bottom_up.output_shape()
        strides = [input_shapes[f].stride for f in in_features]
        for fine, coarse in zip(strides, strides[1:]):
            if coarse != 2 * fine:
                raise ConfigError(
                    f"MODEL.NESTED_FPN.IN_FEATURES={in_features} have strides {strides}; "
                    "consecutive features must double in stride (e.g. res2..res5 = 4, 8, 16, 32)"
                )
        check_choice("norm", norm, NORMS)
        layer_norm = norm_factory(norm, gn_groups, gn_min_channels)
        stages = [int(math.log2(s)) for s in strides]

        self.lateral_convs = []
        for stage, f, channels in zip(stages, in_features, node_channels):
            lateral_conv = Conv2d(
                input_shapes[f].channels,
                channels,
                kernel_size=1,
                bias=norm == "",
                norm=get_norm(layer_norm, channels),
            )
            weight_init.c2_xavier_fill(lateral_conv)
            self.add_module(f"fpn_lateral{stage}", lateral_conv)
            self.lateral_convs.append(lateral_conv)
        grid = build_nested_decoder(
            node_channels,
            node_channels,
            connectivity=connectivity,
            fuse=fuse,
            norm=norm,
            gn_groups=gn_groups,
            gn_min_channels=gn_min_channels,
            block=block,
            upsample=upsample,
        )
        # Keep only the nodes some output reads: with "unet_e", the shallower
        # U-Nets feed no output here, and parameters without gradients would
        # break DistributedDataParallel.
        self.decoder = grid.pruned([grid.last_node(i) for i in range(len(in_features))])
        self.output_convs = []
        for i, stage in enumerate(stages):
            output_conv = Conv2d(
                self.decoder.channels(*self.decoder.last_node(i)),
                out_channels,
                kernel_size=3,
                padding=1,
                bias=norm == "",
                norm=get_norm(layer_norm, out_channels),
            )
            weight_init.c2_xavier_fill(output_conv)
            self.add_module(f"fpn_output{stage}", output_conv)
            self.output_convs.append(output_conv)

        self.top_block = top_block
        self.in_features = tuple(in_features)
        self.bottom_up = bottom_up
        self._out_feature_strides = {f"p{stage}": s for stage, s in zip(stages, strides)}
        if self.top_block is not None:
            for s in range(stages[-1], stages[-1] + self.top_block.num_levels):
                self._out_feature_strides[f"p{s + 1}"] = 2 ** (s + 1)
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]

    @property
    def size_divisibility(self):
        return self._size_divisibility

    def forward(self, x) -> Dict[str, torch.Tensor]:
        bottom_up_features = self.bottom_up(x)
        laterals = [
            conv(bottom_up_features[f]) for conv, f in zip(self.lateral_convs, self.in_features)
        ]
        grid = self.decoder(laterals)
        results = [
            conv(grid[node_name(*self.decoder.last_node(i))])
            for i, conv in enumerate(self.output_convs)
        ]
        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up_features:
                top_block_in_feature = bottom_up_features[self.top_block.in_feature]
            else:
                top_block_in_feature = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_block_in_feature))
        return dict(zip(self._out_features, results))

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def validate_nested_fpn_config(cfg) -> None:
    """Raise ConfigError naming the MODEL.NESTED_FPN key and its allowed values (called when the
    config is loaded; the builder trusts it, as Detectron2's builders do)."""
    nf = cfg.MODEL.NESTED_FPN
    check_decoder_config(nf, "MODEL.NESTED_FPN")
    if len(nf.IN_FEATURES) < 2:
        raise ConfigError(
            f"MODEL.NESTED_FPN.IN_FEATURES={list(nf.IN_FEATURES)} needs at least 2 features"
        )
    if len(nf.NODE_CHANNELS) != len(nf.IN_FEATURES):
        raise ConfigError(
            f"MODEL.NESTED_FPN.NODE_CHANNELS={list(nf.NODE_CHANNELS)} needs one width per "
            f"entry of MODEL.NESTED_FPN.IN_FEATURES={list(nf.IN_FEATURES)}"
        )
    check_group_norm_config(
        nf,
        "MODEL.NESTED_FPN",
        {
            "MODEL.NESTED_FPN.NODE_CHANNELS": list(nf.NODE_CHANNELS),
            "MODEL.FPN.OUT_CHANNELS": [cfg.MODEL.FPN.OUT_CHANNELS],
        },
    )


def _nested_fpn(cfg, bottom_up, top_block):
    """The NestedFPN of MODEL.NESTED_FPN on ``bottom_up``, with ``top_block`` for the levels above."""
    nf = cfg.MODEL.NESTED_FPN
    missing = [f for f in nf.IN_FEATURES if f not in bottom_up.output_shape()]
    if missing:
        raise ConfigError(
            f"MODEL.NESTED_FPN.IN_FEATURES names {missing}, which the ResNet does not output; "
            f"add them to MODEL.RESNETS.OUT_FEATURES (now {list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
        )
    return NestedFPN(
        bottom_up,
        list(nf.IN_FEATURES),
        list(nf.NODE_CHANNELS),
        cfg.MODEL.FPN.OUT_CHANNELS,
        norm=nf.NORM,
        gn_groups=nf.GN_GROUPS,
        gn_min_channels=nf.GN_MIN_CHANNELS_PER_GROUP,
        top_block=top_block,
        connectivity=nf.CONNECTIVITY,
        fuse=nf.FUSE,
        block=nf.BLOCK,
        upsample=nf.UPSAMPLE,
    )


@BACKBONE_REGISTRY.register()
def build_resnet_nested_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet + nested FPN; configured by MODEL.RESNETS and MODEL.NESTED_FPN.

    The output width is MODEL.FPN.OUT_CHANNELS, so heads configured for FPN fit as they are.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    top_block = LastLevelMaxPool()
    coarsest = bottom_up.output_shape().get(cfg.MODEL.NESTED_FPN.IN_FEATURES[-1])
    if coarsest is not None:  # it pools "p5" as in FPN; IN_FEATURES that end before res5 end before p5
        top_block.in_feature = f"p{int(math.log2(coarsest.stride))}"
    return _nested_fpn(cfg, bottom_up, top_block)


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_nested_fpn_backbone(cfg, input_shape: ShapeSpec):
    """The nested twin of Detectron2's ``build_retinanet_resnet_fpn_backbone``: p3..p5 from the grid
    over MODEL.NESTED_FPN.IN_FEATURES (res3..res5), p6 and p7 from res5 by FPN's LastLevelP6P7."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    res5 = bottom_up.output_shape().get("res5")
    if res5 is None:
        raise ConfigError("RetinaNet's p6 and p7 are computed from res5: add it to MODEL.RESNETS.OUT_FEATURES "
                          f"(now {list(cfg.MODEL.RESNETS.OUT_FEATURES)})")
    return _nested_fpn(cfg, bottom_up, LastLevelP6P7(res5.channels, cfg.MODEL.FPN.OUT_CHANNELS))
