import pytest
import torch
from detectron2.layers import Conv2d
from torch import nn

from maskrcnnpp.modeling.nested_decoder import (
    CONNECTIVITIES,
    FUSES,
    NestedDecoder,
    build_nested_decoder,
    grid_nodes,
    node_name,
)

SIZES = [(25, 33), (13, 17), (7, 9), (4, 5)]  # odd sizes, each about half the one above


def features(channels, sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes)]


def test_grid_shapes():
    assert grid_nodes(3, "unet++") == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (0, 3)]
    assert grid_nodes(3, "unet") == [(2, 1), (1, 2), (0, 3)]
    assert len(grid_nodes(4, "unet_e")) == 10


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("fuse", FUSES)
@pytest.mark.parametrize("norm", ["", "GN", "BN"])
def test_every_node_computed_at_its_level_size(connectivity, fuse, norm):
    decoder = build_nested_decoder([32, 64, 96, 128], [32, 64, 64, 32],
                                   connectivity=connectivity, fuse=fuse, norm=norm)
    out = decoder(features([32, 64, 96, 128]))
    for i, j in decoder.grid:
        x = out[node_name(i, j)]
        assert x.shape == (2, decoder.node_channels[i]) + SIZES[i]
    assert set(out) == {node_name(*n) for n in decoder.grid} | {node_name(i, 0) for i in range(4)}


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
def test_upsampling_fits_sizes_that_are_not_powers_of_two(upsample):
    sizes = [(25, 33), (12, 17), (6, 9)]  # both rounded-down and rounded-up halves
    decoder = build_nested_decoder([8, 16, 16], [8, 16, 16], upsample=upsample, block="double_conv")
    out = decoder(features([8, 16, 16], sizes))
    assert out["x_0_2"].shape[-2:] == sizes[0]


def test_unet_plus_plus_node_reads_all_earlier_nodes_of_its_row():
    decoder = build_nested_decoder([8, 16, 32, 64], [8, 16, 32, 64], block="fuse_conv")
    # X^{0,3} concatenates X^{0,0}, X^{0,1}, X^{0,2} (8 each) and Up(X^{1,2}) (16).
    first_conv = decoder.nodes["x_0_3"].block[0]
    assert first_conv.in_channels == 8 * 3 + 16
    unet_plus = build_nested_decoder([8, 16, 32, 64], [8, 16, 32, 64], connectivity="unet+")
    assert unet_plus.nodes["x_0_3"].block[0].in_channels == 8 + 16


def test_required_nodes_are_the_pruned_subnetwork():
    decoder = build_nested_decoder([8, 16, 32, 64, 64], [8, 16, 32, 64, 64])
    for k in range(1, 5):
        expected = {(i, j) for (i, j) in decoder.grid if i + j <= k}
        assert decoder.required_nodes([(0, k)]) == expected


def test_pruned_decoder_is_smaller_and_computes_the_same_node():
    torch.manual_seed(0)
    decoder = build_nested_decoder([8, 16, 32, 64, 64], [8, 16, 32, 64, 64], norm="")
    decoder.eval()
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    feats = features([8, 16, 32, 64, 64], sizes)
    full = decoder(feats)["x_0_2"]
    small = decoder.pruned([(0, 2)])
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in decoder.parameters())
    assert len(small.nodes) == 3
    # The pruned decoder needs only the encoder levels its nodes read.
    out = small(feats[:3], targets=[(0, 2)])
    torch.testing.assert_close(out["x_0_2"], full)
    assert "x_0_3" not in out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"connectivity": "dense"}, "connectivity='dense'"),
        ({"fuse": "add"}, "fuse='add'"),
        ({"norm": "LN"}, "norm='LN'"),
        ({"upsample": "pixelshuffle"}, "upsample='pixelshuffle'"),
    ],
)
def test_unknown_settings_name_the_setting_and_the_allowed_values(kwargs, message):
    with pytest.raises(ValueError) as e:
        build_nested_decoder([8, 16], [8, 16], **kwargs)
    assert message in str(e.value) and "allowed values" in str(e.value)


def test_group_norm_needs_widths_divisible_by_32():
    with pytest.raises(ValueError, match="32 groups"):
        build_nested_decoder([32, 32], [48, 32], norm="GN")


def test_group_norm_uses_the_given_number_of_groups():
    decoder = build_nested_decoder([16, 32], [16, 32], norm="GN", gn_groups=8, fuse="sum")
    norms = [m for m in decoder.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3  # X^{0,1}: a 1x1 projection per input, then the 3x3 conv
    assert {m.num_groups for m in norms} == {8}
    with pytest.raises(ValueError, match="12 groups, but a layer has 16 channels"):
        build_nested_decoder([16, 24], [16, 24], norm="GN", gn_groups=12)
    with pytest.raises(ValueError, match="gn_groups=0"):
        build_nested_decoder([16, 32], [16, 32], norm="GN", gn_groups=0)


@pytest.mark.parametrize("norm", ["", "GN", "BN"])
def test_node_convs_are_detectron2_convs_with_norm_and_relu(norm):
    decoder = build_nested_decoder([32, 64], [32, 64], norm=norm, block="double_conv")
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(isinstance(c, Conv2d) for c in convs)
    for conv in convs:
        assert (conv.bias is None) == bool(norm)
        assert conv.activation is not None
        assert (conv.norm is None) == (norm == "")
    out = decoder(features([32, 64], SIZES[:2]))["x_0_1"]
    assert (out >= 0).all() and (out > 0).any()  # ReLU'd


def test_pruning_shares_the_nodes_and_leaves_the_decoder_whole():
    decoder = build_nested_decoder([8, 16, 32, 64], [8, 16, 32, 64])
    before = [id(p) for p in decoder.parameters()]
    small = decoder.pruned([(1, 1)])
    assert list(small.nodes) == ["x_1_1"] and list(small.upsamples) == ["x_1_1"]
    assert small.nodes["x_1_1"] is decoder.nodes["x_1_1"]
    assert small.upsamples["x_1_1"] is decoder.upsamples["x_1_1"]
    assert [id(p) for p in decoder.parameters()] == before
    assert len(decoder.nodes) == 6
    assert decoder.eval().pruned([(0, 1)]).training is False


def test_a_decoder_from_nodes_must_hold_every_input_of_each_node():
    full = build_nested_decoder([8, 16, 32], [8, 16, 32])
    nodes = {"x_0_2": full.nodes["x_0_2"], "x_0_1": full.nodes["x_0_1"]}
    ups = {k: full.upsamples[k] for k in nodes}
    with pytest.raises(ValueError, match=r"lack their inputs \['x_1_1'\]"):
        NestedDecoder([8, 16, 32], [8, 16, 32], "unet++", nodes, ups)
    with pytest.raises(ValueError, match="must name the same nodes"):
        NestedDecoder([8, 16, 32], [8, 16, 32], "unet++", {"x_2_1": full.nodes["x_0_1"]}, {})
