"""Mask R-CNN++'s backbone: a ResNet bottom-up path and a nested (UNet++) top-down grid.

A drop-in for Detectron2's ``build_resnet_fpn_backbone``: the same output names
(p2..p6), strides, channels and ``size_divisibility``, so the RPN and ROI heads
are unchanged. FPN's single top-down path is replaced by the grid of
``NestedDecoder``; output level i is the last node of row i of the grid.
"""
import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from fvcore.nn import weight_init
from torch import nn

from .nested_decoder import build_nested_decoder, check_decoder_config, make_norm, node_name

__all__ = ["NestedFPN", "build_resnet_nested_fpn_backbone"]


def _plain_conv(in_channels, out_channels, kernel_size, norm):
    """Conv (+ norm), no activation: FPN's convention for laterals and outputs."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm
    )
    weight_init.c2_xavier_fill(conv)
    return nn.Sequential(conv, make_norm(norm, out_channels)) if norm else conv


class NestedFPN(Backbone):
    """ResNet features -> lateral 1x1 convs -> NestedDecoder -> 3x3 output convs -> p2..p6."""

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: List[str],
        node_channels: List[int],
        out_channels: int,
        *,
        connectivity: str = "unet++",
        fuse: str = "concat",
        norm: str = "",
        block: str = "fuse_conv",
        upsample: str = "nearest",
        add_p6: bool = True,
    ):
        super().__init__()
        shapes = bottom_up.output_shape()
        strides = [shapes[f].stride for f in in_features]
        for fine, coarse in zip(strides, strides[1:]):
            if coarse != 2 * fine:
                raise ValueError(
                    f"MODEL.NESTED_FPN.IN_FEATURES={in_features} have strides {strides}; "
                    "consecutive features must double in stride (e.g. res2..res5 = 4, 8, 16, 32)"
                )
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self.laterals = nn.ModuleList(
            _plain_conv(shapes[f].channels, c, 1, norm) for f, c in zip(in_features, node_channels)
        )
        grid = build_nested_decoder(
            node_channels,
            node_channels,
            connectivity=connectivity,
            fuse=fuse,
            norm=norm,
            block=block,
            upsample=upsample,
        )
        # Keep only the nodes some output reads: with "unet_e", the shallower
        # U-Nets feed no output here, and parameters without gradients would
        # break DistributedDataParallel.
        self.decoder = grid.pruned([grid.last_node(i) for i in range(len(in_features))])
        self.outputs = nn.ModuleList(
            _plain_conv(self.decoder.channels(*self.decoder.last_node(i)), out_channels, 3, norm)
            for i in range(len(in_features))
        )
        first_level = int(math.log2(strides[0]))
        self._out_features = [f"p{first_level + i}" for i in range(len(in_features))]
        out_strides = list(strides)
        if add_p6:
            self._out_features.append(f"p{first_level + len(in_features)}")
            out_strides.append(2 * strides[-1])
        self._out_feature_strides = dict(zip(self._out_features, out_strides))
        self._out_feature_channels = {f: out_channels for f in self._out_features}
        self._size_divisibility = strides[-1]
        self.add_p6 = add_p6

    @property
    def size_divisibility(self):
        return self._size_divisibility

    def forward(self, x) -> Dict[str, torch.Tensor]:
        features = self.bottom_up(x)
        grid_inputs = [lat(features[f]) for lat, f in zip(self.laterals, self.in_features)]
        grid = self.decoder(grid_inputs)
        results = [
            conv(grid[node_name(*self.decoder.last_node(i))])
            for i, conv in enumerate(self.outputs)
        ]
        if self.add_p6:
            # The extra coarsest level is a stride-2 subsample of the last one, as in FPN.
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2))
        return dict(zip(self._out_features, results))

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


def validate_nested_fpn_config(cfg) -> None:
    """Fail at build time, naming the key and the allowed values."""
    nf = cfg.MODEL.NESTED_FPN
    check_decoder_config(nf, "MODEL.NESTED_FPN")
    if len(nf.IN_FEATURES) < 2:
        raise ValueError(
            f"MODEL.NESTED_FPN.IN_FEATURES={list(nf.IN_FEATURES)} needs at least 2 features"
        )
    if len(nf.NODE_CHANNELS) != len(nf.IN_FEATURES):
        raise ValueError(
            f"MODEL.NESTED_FPN.NODE_CHANNELS={list(nf.NODE_CHANNELS)} needs one width per "
            f"entry of MODEL.NESTED_FPN.IN_FEATURES={list(nf.IN_FEATURES)}"
        )
    if nf.NORM == "GN":
        odd = [c for c in list(nf.NODE_CHANNELS) + [cfg.MODEL.FPN.OUT_CHANNELS] if c % 32]
        if odd:
            raise ValueError(
                f"MODEL.NESTED_FPN.NORM='GN' uses 32 groups but widths {odd} "
                "(MODEL.NESTED_FPN.NODE_CHANNELS / MODEL.FPN.OUT_CHANNELS) are not multiples of 32"
            )


@BACKBONE_REGISTRY.register()
def build_resnet_nested_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet + nested FPN; configured by MODEL.RESNETS and MODEL.NESTED_FPN.

    The output width is MODEL.FPN.OUT_CHANNELS, so heads configured for FPN fit as they are.
    """
    validate_nested_fpn_config(cfg)
    nf = cfg.MODEL.NESTED_FPN
    bottom_up = build_resnet_backbone(cfg, input_shape)
    missing = [f for f in nf.IN_FEATURES if f not in bottom_up.output_shape()]
    if missing:
        raise ValueError(
            f"MODEL.NESTED_FPN.IN_FEATURES names {missing}, which the ResNet does not output; "
            f"add them to MODEL.RESNETS.OUT_FEATURES (now {list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
        )
    return NestedFPN(
        bottom_up,
        list(nf.IN_FEATURES),
        list(nf.NODE_CHANNELS),
        cfg.MODEL.FPN.OUT_CHANNELS,
        connectivity=nf.CONNECTIVITY,
        fuse=nf.FUSE,
        norm=nf.NORM,
        block=nf.BLOCK,
        upsample=nf.UPSAMPLE,
    )
