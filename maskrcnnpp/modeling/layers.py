"""Detectron2's conv building blocks, with the GroupNorm group count as a setting.

Detectron2's ``get_norm("GN", c)`` always makes 32 groups; ``norm_factory`` hands
``get_norm`` a function for "GN" that makes ``gn_groups`` groups instead (fewer in
narrow layers when ``gn_min_channels`` asks for several channels per group), and
names the width that does not split into them.
"""
import functools
from typing import Callable, Union

import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from fvcore.nn import weight_init
from torch import nn

__all__ = ["Norm", "conv_norm_relu", "group_count", "group_norm", "norm_factory"]

# What get_norm accepts: a norm's name ("" for none), or a function of the channel count.
Norm = Union[str, Callable[[int], nn.Module]]


def norm_factory(norm: str, gn_groups: int = 32, gn_min_channels: int = 0) -> Norm:
    """``norm`` as get_norm takes it, with "GN" made of ``group_count`` groups."""
    if norm != "GN":
        return norm
    if gn_groups < 1:
        raise ValueError(f"norm='GN' needs a positive number of groups, got gn_groups={gn_groups}")
    if gn_min_channels < 0:
        raise ValueError(f"gn_min_channels={gn_min_channels} must be 0 (off) or a channel count")
    return functools.partial(group_norm, gn_groups, gn_min_channels)


def group_count(channels: int, groups: int, min_channels: int = 0) -> int:
    """``groups``, or fewer where ``channels`` would leave under ``min_channels`` per group."""
    if min_channels > 0:
        return max(1, min(groups, channels // min_channels))
    return groups


def group_norm(max_groups: int, min_channels: int, channels: int) -> nn.GroupNorm:
    groups = group_count(channels, max_groups, min_channels)
    if channels % groups:
        raise ValueError(
            f"norm='GN' uses {groups} groups, but a layer has {channels} channels, "
            f"which {groups} does not divide; choose widths divisible by {groups}, "
            "another group count or norm='BN'"
        )
    return nn.GroupNorm(groups, channels)


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, norm: Norm) -> Conv2d:
    """Conv + norm + ReLU, MSRA-initialised; the conv has a bias only when there is no norm."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        bias=norm == "",
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    weight_init.c2_msra_fill(conv)
    return conv
