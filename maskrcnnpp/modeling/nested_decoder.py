"""The UNet++ grid of nested decoder nodes, shared by the nested FPN and the semantic UNet++.

Level i = 0 is the finest. The inputs are the encoder features X^{i,0},
i = 0..L. For j >= 1 and i + j <= L a node is

    X^{i,j} = H([same-level inputs of X^{i,j}, Up(X^{i+1,j-1})])

where the same-level inputs depend on the connectivity:

    "unet++"  X^{i,0} .. X^{i,j-1}   dense skips (UNet++)
    "unet+"   X^{i,j-1}             short skips only (UNet+)
    "unet_e"  X^{i,0}               an ensemble of U-Nets of depths 1..L (UNet^e)
    "unet"    X^{i,0}               only the nodes with i + j = L (one U-Net of depth L)

``Up`` resizes to the exact size of X^{i,0}, so inputs need not be multiples of
any stride. Every node is an entry of ``nodes`` named ``node_name(i, j)`` and is
returned by ``forward``, which is what deep supervision and pruning build on.
"""
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .layers import Norm, conv_norm_relu, group_count, norm_factory

__all__ = [
    "BLOCKS",
    "CONNECTIVITIES",
    "FUSES",
    "NORMS",
    "UPSAMPLES",
    "NestedDecoder",
    "build_nested_decoder",
    "check_choice",
    "check_decoder_config",
    "check_group_norm_config",
    "grid_nodes",
    "node_name",
]

CONNECTIVITIES = ("unet", "unet_e", "unet+", "unet++")
FUSES = ("concat", "sum")
NORMS = ("", "GN", "BN", "SyncBN")
BLOCKS = ("fuse_conv", "double_conv")
UPSAMPLES = ("nearest", "bilinear", "transpose")

Node = Tuple[int, int]


def check_choice(name: str, value, allowed: Sequence) -> None:
    """Raise a ValueError naming the setting and its allowed values."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; allowed values: {list(allowed)}")


# Config keys shared by every builder of a NestedDecoder, with their allowed values.
DECODER_CHOICES = {
    "CONNECTIVITY": CONNECTIVITIES,
    "FUSE": FUSES,
    "NORM": NORMS,
    "BLOCK": BLOCKS,
    "UPSAMPLE": UPSAMPLES,
}


def check_decoder_config(node, prefix: str) -> None:
    """Check the decoder keys present in a config node, naming them as ``prefix.KEY``."""
    for key, allowed in DECODER_CHOICES.items():
        if key in node:
            check_choice(f"{prefix}.{key}", node[key], allowed)


def check_group_norm_config(node, prefix: str, widths: Mapping[str, Sequence[int]]) -> None:
    """With ``prefix.NORM`` "GN", every width must split into its groups.

    A width's groups are ``prefix.GN_GROUPS``, or fewer where ``prefix.GN_MIN_CHANNELS_PER_GROUP``
    (when the node has that key) asks for more channels per group. ``widths`` maps the config
    keys that hold normalised widths to their values.
    """
    groups = node.GN_GROUPS
    min_channels = node.get("GN_MIN_CHANNELS_PER_GROUP", 0)
    if groups < 1:
        raise ConfigError(f"{prefix}.GN_GROUPS={groups} must be a positive number of groups")
    if min_channels < 0:
        raise ConfigError(
            f"{prefix}.GN_MIN_CHANNELS_PER_GROUP={min_channels} must be 0 (off) or a channel count"
        )
    if node.NORM != "GN":
        return
    for key, values in widths.items():
        odd = [w for w in values if w % group_count(w, groups, min_channels)]
        if not odd:
            continue
        if not min_channels:
            raise ConfigError(
                f"{prefix}.NORM='GN' splits channels into {prefix}.GN_GROUPS={groups} groups, "
                f"but {key} holds widths {odd} that {groups} does not divide"
            )
        splits = ", ".join(f"{w} into {group_count(w, groups, min_channels)}" for w in odd)
        raise ConfigError(
            f"{prefix}.NORM='GN' with {prefix}.GN_GROUPS={groups} and "
            f"{prefix}.GN_MIN_CHANNELS_PER_GROUP={min_channels} would split {key}'s widths "
            f"unevenly ({splits} groups); choose widths divisible by the per-group minimum"
        )


def node_name(i: int, j: int) -> str:
    return f"x_{i}_{j}"


def grid_nodes(depth: int, connectivity: str) -> List[Node]:
    """Decoder nodes (i, j), j >= 1, in an order where every node follows its inputs."""
    nodes = [(i, j) for j in range(1, depth + 1) for i in range(depth + 1 - j)]
    if connectivity == "unet":
        nodes = [(i, j) for i, j in nodes if i + j == depth]
    return nodes


def same_level_inputs(i: int, j: int, connectivity: str) -> List[Node]:
    if connectivity == "unet++":
        return [(i, k) for k in range(j)]
    if connectivity == "unet+":
        return [(i, j - 1)]
    return [(i, 0)]


def node_inputs(i: int, j: int, connectivity: str) -> List[Node]:
    """The nodes X^{i,j} reads: its same-level inputs, then X^{i+1,j-1} (to upsample)."""
    return same_level_inputs(i, j, connectivity) + [(i + 1, j - 1)]


def check_level_widths(in_channels: Sequence[int], node_channels: Sequence[int]) -> None:
    if len(in_channels) < 2:
        raise ValueError(f"a nested decoder needs at least 2 levels, got {len(in_channels)}")
    if len(node_channels) != len(in_channels):
        raise ValueError(
            f"node_channels has {len(node_channels)} entries but there are "
            f"{len(in_channels)} levels (in_channels={list(in_channels)})"
        )


class NestedNode(nn.Module):
    """H of one node: merge the inputs (concat or sum) and apply the conv block."""

    def __init__(
        self, in_channels: Sequence[int], out_channels: int, fuse: str, block: str, norm: Norm
    ):
        super().__init__()
        self.fuse = fuse
        if fuse == "concat":
            self.project = None
            merged = sum(in_channels)
        else:
            self.project = nn.ModuleList(
                conv_norm_relu(c, out_channels, 1, norm) for c in in_channels
            )
            merged = out_channels
        if block == "double_conv":
            first = conv_norm_relu(merged, out_channels, 3, norm)
        elif fuse == "concat":
            first = conv_norm_relu(merged, out_channels, 1, norm)
        else:  # "sum" already fused by the 1x1 projections
            first = nn.Identity()
        self.block = nn.Sequential(first, conv_norm_relu(out_channels, out_channels, 3, norm))

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        if self.fuse == "concat":
            x = torch.cat(inputs, dim=1)
        else:
            x = sum(p(t) for p, t in zip(self.project, inputs))
        return self.block(x)


class Upsample(nn.Module):
    """Resize to an exact target size: interpolation, or a learned 2x2 transposed conv."""

    def __init__(self, mode: str, in_channels: int, out_channels: int):
        super().__init__()
        self.mode = mode
        self.out_channels = out_channels if mode == "transpose" else in_channels
        if mode == "transpose":
            self.deconv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        if self.mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = self.deconv(x)
        # 2x of a rounded-down or rounded-up half is off by at most one pixel:
        # pad (positive) or crop (negative) at the bottom/right edge.
        return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


class NestedDecoder(nn.Module):
    """The grid X^{i,j} over encoder features X^{0,0} .. X^{L,0}, made of its nodes.

    ``build_nested_decoder`` builds every node from widths and settings;
    ``pruned`` passes a subset of a decoder's own nodes to this constructor.

    Args:
        in_channels: channels of X^{i,0}, finest level first (L + 1 entries).
        node_channels: width of the nodes X^{i,j>=1} at each level (L + 1 entries;
            the deepest level's entry is unused since it has no decoder node).
        connectivity: one of CONNECTIVITIES.
        nodes: {node_name(i, j): NestedNode} for the grid's nodes, or for a subset
            that holds the inputs of each of its nodes.
        upsamples: {node_name(i, j): Upsample} for the same nodes.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        node_channels: Sequence[int],
        connectivity: str,
        nodes: Mapping[str, nn.Module],
        upsamples: Mapping[str, nn.Module],
    ):
        super().__init__()
        check_choice("connectivity", connectivity, CONNECTIVITIES)
        check_level_widths(in_channels, node_channels)
        self.in_channels = list(in_channels)
        self.node_channels = list(node_channels)
        self.depth = len(in_channels) - 1
        self.connectivity = connectivity
        self.grid = [n for n in grid_nodes(self.depth, connectivity) if node_name(*n) in nodes]
        names = [node_name(*n) for n in self.grid]
        if sorted(names) != sorted(nodes) or sorted(upsamples) != sorted(nodes):
            raise ValueError(
                f"nodes {sorted(nodes)} and upsamples {sorted(upsamples)} must name the same "
                f"nodes of a depth-{self.depth} {connectivity!r} grid"
            )
        inputs = {n for i, j in self.grid for n in node_inputs(i, j, connectivity) if n[1] >= 1}
        if not inputs <= set(self.grid):
            lacking = sorted(node_name(*n) for n in inputs - set(self.grid))
            raise ValueError(f"nodes {names} lack their inputs {lacking}")
        self.nodes = nn.ModuleDict({k: nodes[k] for k in names})
        self.upsamples = nn.ModuleDict({k: upsamples[k] for k in names})

    def channels(self, i: int, j: int) -> int:
        return self.in_channels[i] if j == 0 else self.node_channels[i]

    def last_node(self, i: int) -> Node:
        """The node that ends row i: the deepest decoder output at level i."""
        return (i, self.depth - i)

    def required_nodes(self, targets: Iterable[Node]) -> Set[Node]:
        """All decoder nodes (j >= 1) that computing ``targets`` needs, targets included."""
        needed: Set[Node] = set()
        stack = [t for t in targets if t[1] >= 1]
        while stack:
            i, j = stack.pop()
            if (i, j) in needed:
                continue
            if (i, j) not in self.grid:
                raise KeyError(f"node {node_name(i, j)} is not part of this decoder")
            needed.add((i, j))
            stack.extend(n for n in node_inputs(i, j, self.connectivity) if n[1] >= 1)
        return needed

    def forward(
        self, features: Sequence[torch.Tensor], targets: Optional[Iterable[Node]] = None
    ) -> Dict[str, torch.Tensor]:
        """Compute the grid.

        Args:
            features: X^{0,0} .. X^{k,0}, finest first. Fewer than L + 1 levels are
                allowed when ``targets`` only needs those (pruned inference).
            targets: nodes to compute; only they and their inputs are computed.
                Default: every node.
        Returns:
            {node_name(i, j): tensor} for the inputs and every computed node.
        """
        needed = set(self.grid) if targets is None else self.required_nodes(targets)
        out = {node_name(i, 0): f for i, f in enumerate(features)}
        for i, j in self.grid:
            if (i, j) not in needed:
                continue
            name = node_name(i, j)
            size = tuple(features[i].shape[-2:])
            below = self.upsamples[name](out[node_name(i + 1, j - 1)], size)
            skips = [out[node_name(*n)] for n in same_level_inputs(i, j, self.connectivity)]
            out[name] = self.nodes[name](skips + [below])
        return out

    def pruned(self, targets: Iterable[Node]) -> "NestedDecoder":
        """A decoder holding only the nodes ``targets`` need, sharing their weights.

        Unlike dropping outputs, the pruned module has fewer parameters and does
        less work, which is what UNet++'s inference-time pruning is for.
        """
        keep = self.required_nodes(targets)
        names = [node_name(*n) for n in self.grid if n in keep]
        small = NestedDecoder(
            self.in_channels,
            self.node_channels,
            self.connectivity,
            {k: self.nodes[k] for k in names},
            {k: self.upsamples[k] for k in names},
        )
        return small.train(self.training)


def build_nested_decoder(
    in_channels: Sequence[int],
    node_channels: Sequence[int],
    *,
    connectivity: str = "unet++",
    fuse: str = "concat",
    norm: str = "",
    gn_groups: int = 32,
    gn_min_channels: int = 0,
    block: str = "fuse_conv",
    upsample: str = "nearest",
) -> NestedDecoder:
    """Every node of the grid, built from widths and settings.

    Args:
        in_channels, node_channels, connectivity: as for NestedDecoder.
        fuse: "concat" (UNet++) or "sum".
        norm: "", "GN", "BN" or "SyncBN".
        gn_groups: groups of each GroupNorm when norm is "GN".
        gn_min_channels: if > 0, fewer groups in layers that would have fewer channels per group.
        block: "fuse_conv" (1x1 + 3x3) or "double_conv" (two 3x3, the paper's node).
        upsample: "nearest", "bilinear" or "transpose".
    """
    check_choice("fuse", fuse, FUSES)  # connectivity: NestedDecoder checks it
    check_choice("block", block, BLOCKS)
    check_choice("upsample", upsample, UPSAMPLES)
    check_choice("norm", norm, NORMS)
    norm = norm_factory(norm, gn_groups, gn_min_channels)
    check_level_widths(in_channels, node_channels)

    def channels(i: int, j: int) -> int:
        return in_channels[i] if j == 0 else node_channels[i]

    nodes, upsamples = {}, {}
    for i, j in grid_nodes(len(in_channels) - 1, connectivity):
        up = Upsample(upsample, channels(i + 1, j - 1), node_channels[i])
        inputs = [channels(*n) for n in same_level_inputs(i, j, connectivity)]
        upsamples[node_name(i, j)] = up
        nodes[node_name(i, j)] = NestedNode(
            inputs + [up.out_channels], node_channels[i], fuse, block, norm
        )
    return NestedDecoder(in_channels, node_channels, connectivity, nodes, upsamples)
