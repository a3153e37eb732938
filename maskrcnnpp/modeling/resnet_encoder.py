"""A Detectron2 ResNet as a five-level UNet++ encoder.

Level 0 is the stem's stride-2 convolution (before its max-pool), levels 1..4
are res2..res5 (strides 4, 8, 16, 32), so every level halves the previous one
as the nested decoder expects.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from torch import nn

from ..errors import ConfigError

__all__ = ["ResNetEncoder", "build_resnet_encoder"]

STAGES = ("res2", "res3", "res4", "res5")


class ResNetEncoder(nn.Module):
    def __init__(self, stem_conv: nn.Module, stem_channels: int, stages, stage_channels):
        super().__init__()
        self.stem_conv = stem_conv
        self.stages = nn.ModuleList(stages)
        self._out_channels = [stem_channels] + list(stage_channels)

    @property
    def out_channels(self) -> List[int]:
        return self._out_channels[: 1 + len(self.stages)]

    @property
    def size_divisibility(self) -> int:
        return 2 ** (1 + len(self.stages))

    def forward(self, x: torch.Tensor, num_levels: Optional[int] = None) -> List[torch.Tensor]:
        num_levels = 1 + len(self.stages) if num_levels is None else num_levels
        x = F.relu_(self.stem_conv(x))
        features = [x]
        if num_levels > 1:
            x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # the rest of BasicStem
        for stage in self.stages[: num_levels - 1]:
            x = stage(x)
            features.append(x)
        return features

    def pruned(self, num_levels: int) -> "ResNetEncoder":
        small = ResNetEncoder(
            self.stem_conv,
            self._out_channels[0],
            list(self.stages)[: num_levels - 1],
            self._out_channels[1:num_levels],
        )
        small.train(self.training)
        return small


def build_resnet_encoder(cfg, in_channels: int, num_levels: int) -> ResNetEncoder:
    """Stem + the first ``num_levels - 1`` of res2..res5, configured by MODEL.RESNETS."""
    if not 2 <= num_levels <= 1 + len(STAGES):
        raise ConfigError(
            f"MODEL.UNETPP.ENCODER='resnet' gives at most {1 + len(STAGES)} levels "
            f"(stem, res2..res5), so MODEL.UNETPP.DEPTH must be 1..{len(STAGES)}; "
            f"got DEPTH={num_levels - 1}"
        )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.OUT_FEATURES = list(STAGES[: num_levels - 1])
    resnet = build_resnet_backbone(cfg, ShapeSpec(channels=in_channels))
    shapes = resnet.output_shape()
    names = list(STAGES[: num_levels - 1])
    stages = [resnet.stages[resnet.stage_names.index(n)] for n in names]
    return ResNetEncoder(
        resnet.stem.conv1,
        resnet.stem.out_channels,
        stages,
        [shapes[n].channels for n in names],
    )
