"""The UNet++ paper's encoder: two 3x3 conv blocks per level, 2x2 max-pool between levels."""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_norm_relu, norm_factory

__all__ = ["PlainEncoder", "build_plain_encoder"]


class PlainEncoder(nn.Module):
    """Features X^{0,0} .. X^{L,0} at strides 1, 2, ..., 2^L, finest first.

    Args:
        levels: one module per level, finest first; level i > 0 reads the 2x2
            max-pool of level i - 1.
        filters: the output width of each level.
    """

    def __init__(self, levels: Sequence[nn.Module], filters: Sequence[int]):
        super().__init__()
        if len(levels) != len(filters):
            raise ValueError(f"{len(levels)} levels but {len(filters)} filters {list(filters)}")
        self.levels = nn.ModuleList(levels)
        self.filters = list(filters)

    @property
    def out_channels(self) -> List[int]:
        return list(self.filters)

    @property
    def size_divisibility(self) -> int:
        """Inputs whose sides are multiples of this keep every level's size exact."""
        return 2 ** (len(self.levels) - 1)

    def forward(self, x: torch.Tensor, num_levels: Optional[int] = None) -> List[torch.Tensor]:
        num_levels = len(self.levels) if num_levels is None else num_levels
        features = []
        for i, level in enumerate(self.levels[:num_levels]):
            if i > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = level(x)
            features.append(x)
        return features

    def pruned(self, num_levels: int) -> "PlainEncoder":
        """The first ``num_levels`` levels as an encoder of their own, sharing weights."""
        small = PlainEncoder(self.levels[:num_levels], self.filters[:num_levels])
        return small.train(self.training)


def build_plain_encoder(
    in_channels: int, filters: Sequence[int], norm: str = "", gn_groups: int = 32
) -> PlainEncoder:
    """The paper's encoder on ``in_channels``-channel images.

    Args:
        filters: width of each level, finest first (L + 1 entries; the paper: 32 .. 512).
        norm: "" (the paper's) or a norm accepted by the nested decoder.
        gn_groups: groups of each GroupNorm when norm is "GN".
    """
    norm = norm_factory(norm, gn_groups)
    widths = [in_channels] + list(filters)
    levels = [
        nn.Sequential(conv_norm_relu(c_in, c_out, 3, norm), conv_norm_relu(c_out, c_out, 3, norm))
        for c_in, c_out in zip(widths, widths[1:])
    ]
    return PlainEncoder(levels, filters)
