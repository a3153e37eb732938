import os

import pytest
import torch
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.utils.events import EventStorage
from torch import nn

from maskrcnnpp.data import synthetic
from maskrcnnpp.engine.setup import check_config, load_cfg
from maskrcnnpp.modeling.nested_fpn import build_resnet_nested_fpn_backbone

CPU_CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"


def cpu_cfg(repo_root, **overrides):
    cfg = load_cfg(os.path.join(repo_root, CPU_CONFIG))
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def build_checked(cfg, *args):
    """The backbone as the commands build it: the config checked when loaded, then built."""
    check_config(cfg)
    return build_backbone(cfg, *args)


def test_backbone_is_registered_on_import():
    assert "build_resnet_nested_fpn_backbone" in BACKBONE_REGISTRY
    assert BACKBONE_REGISTRY.get("build_resnet_nested_fpn_backbone") is (
        build_resnet_nested_fpn_backbone
    )


def neck_params(backbone):
    return sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("bottom_up."))


# Counts of the neck before it was rebuilt from Detectron2's Conv2d / get_norm /
# LastLevelMaxPool (the FLOPs and, under the renamed keys, the outputs were equal too).
@pytest.mark.parametrize(
    "config, params", [(CPU_CONFIG, 839_744), ("configs/Base-RCNN-NestedFPN.yaml", 3_783_744)]
)
def test_default_necks_keep_their_parameter_counts(repo_root, config, params):
    backbone = build_backbone(load_cfg(os.path.join(repo_root, config)))
    assert neck_params(backbone) == params


def test_neck_is_built_like_detectron2s_fpn(repo_root):
    backbone = build_backbone(cpu_cfg(repo_root))
    names = [n for n, _ in backbone.named_children()]
    assert [n for n in names if n.startswith("fpn_")] == [
        "fpn_lateral2", "fpn_lateral3", "fpn_lateral4", "fpn_lateral5",
        "fpn_output2", "fpn_output3", "fpn_output4", "fpn_output5",
    ]
    assert isinstance(backbone.top_block, LastLevelMaxPool)
    convs = [m for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)
             and not n.startswith("bottom_up.")]
    assert convs and all(isinstance(c, Conv2d) for c in convs)
    assert all(isinstance(c.norm, nn.GroupNorm) and c.bias is None for c in convs)
    assert "fpn_lateral2.norm.weight" in backbone.state_dict()


@pytest.mark.parametrize("groups", [32, 16])
def test_group_norm_has_the_configured_number_of_groups(repo_root, groups):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.GN_GROUPS": groups,
                                "MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP": 0})
    backbone = build_backbone(cfg)
    neck = [m for n, m in backbone.named_modules() if not n.startswith("bottom_up.")]
    norms = [m for m in neck if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 4 + 2 * 6 + 4  # laterals, two convs per node, outputs
    assert {m.num_groups for m in norms} == {groups}


def test_shipped_config_gives_narrow_nodes_fewer_groups(repo_root):
    cfg = cpu_cfg(repo_root)  # GN_MIN_CHANNELS_PER_GROUP 4, chosen on val
    neck = [m for n, m in build_backbone(cfg).named_modules() if not n.startswith("bottom_up.")]
    groups = {(m.num_channels, m.num_groups) for m in neck if isinstance(m, nn.GroupNorm)}
    # widths 32/64/128/128: at least 4 channels per group, never more than GN_GROUPS=32 groups
    assert groups == {(32, 8), (64, 16), (128, 32)}


@pytest.mark.parametrize(
    "value, expected",
    [
        (-1, "MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP=-1 must be 0 (off)"),
        (6, "MODEL.NESTED_FPN.NODE_CHANNELS's widths unevenly (32 into 5, 64 into 10, 128 into 21,"),
    ],
)
def test_bad_min_channels_per_group_is_named(repo_root, value, expected):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP": value})
    with pytest.raises(ValueError) as e:
        build_checked(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("MODEL.NESTED_FPN.GN_GROUPS", 3, "NODE_CHANNELS holds widths [32, 64, 128, 128]"),
        ("MODEL.NESTED_FPN.NODE_CHANNELS", [48, 64, 128, 128], "holds widths [48]"),
        ("MODEL.FPN.OUT_CHANNELS", 80, "MODEL.FPN.OUT_CHANNELS holds widths [80]"),
        ("MODEL.NESTED_FPN.GN_GROUPS", 0, "MODEL.NESTED_FPN.GN_GROUPS=0 must be a positive"),
    ],
)
def test_widths_the_group_count_does_not_divide_name_the_keys(repo_root, key, value, expected):
    cfg = cpu_cfg(repo_root, **{key: value, "MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP": 0})
    with pytest.raises(ValueError) as e:
        build_checked(cfg)
    message = str(e.value)
    assert expected in message and "\n" not in message
    assert "MODEL.NESTED_FPN.GN_GROUPS" in message


@pytest.mark.parametrize("config", [CPU_CONFIG, "configs/Base-RCNN-NestedFPN.yaml"])
def test_outputs_match_fpn_names_strides_channels(repo_root, config):
    cfg = load_cfg(os.path.join(repo_root, config))
    nested = build_backbone(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    fpn = build_backbone(cfg)
    assert nested.output_shape() == fpn.output_shape()
    assert list(nested.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert nested.size_divisibility == fpn.size_divisibility == 32


def test_odd_input_size_works_and_keeps_resnet_sizes(repo_root):
    # Detectron2's FPN itself fails here (it adds 2x-upsampled maps); the model
    # pads inputs to size_divisibility, but the backbone alone must not care.
    cfg = cpu_cfg(repo_root)
    nested = build_backbone(cfg).eval()
    x = torch.randn(1, 3, 250, 333)
    with torch.no_grad():
        out = nested(x)
        res = nested.bottom_up(x)
    for level in (2, 3, 4, 5):
        assert out[f"p{level}"].shape[-2:] == res[f"res{level}"].shape[-2:]
        assert out[f"p{level}"].shape[1] == cfg.MODEL.FPN.OUT_CHANNELS
    assert out["p6"].shape[-2:] == ((res["res5"].shape[-2] + 1) // 2, (res["res5"].shape[-1] + 1) // 2)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_unet_e_keeps_only_nodes_that_feed_an_output(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.CONNECTIVITY": "unet_e"})
    assert sorted(build_backbone(cfg).decoder.nodes) == ["x_0_3", "x_1_2", "x_2_1"]
    cfg.MODEL.NESTED_FPN.CONNECTIVITY = "unet++"
    assert len(build_backbone(cfg).decoder.nodes) == 6


@pytest.mark.parametrize("connectivity", ["unet++", "unet", "unet_e", "unet+"])
def test_every_neck_parameter_gets_a_gradient_in_a_training_step(repo_root, tmp_path, connectivity):
    # Detectron2 wraps models in DDP without find_unused_parameters: an unused
    # parameter would hang multi-GPU training, so every one must get a gradient.
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.CONNECTIVITY": connectivity})
    cfg.INPUT.SCALE_POLICY, cfg.INPUT.MIN_SIZE_TRAIN = "image_size", (128,)  # a plain DatasetMapper
    torch.manual_seed(0)
    model = build_model(cfg).train()
    records = synthetic.make_dataset(str(tmp_path), num_images=2)
    from detectron2.data import DatasetMapper
    from maskrcnnpp.data.augmentation import build_nuclei_augmentation

    mapper = DatasetMapper(cfg, True, augmentations=build_nuclei_augmentation(cfg, True))
    with EventStorage(0):
        losses = model([mapper(dict(r)) for r in records])
    sum(losses.values()).backward()
    neck = {n: p for n, p in model.backbone.named_parameters() if not n.startswith("bottom_up.")}
    assert len(neck) > 20
    missing = [n for n, p in neck.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("MODEL.NESTED_FPN.CONNECTIVITY", "dense", "MODEL.NESTED_FPN.CONNECTIVITY='dense'"),
        ("MODEL.NESTED_FPN.FUSE", "max", "MODEL.NESTED_FPN.FUSE='max'"),
        ("MODEL.NESTED_FPN.NORM", "LayerNorm", "MODEL.NESTED_FPN.NORM='LayerNorm'"),
    ],
)
def test_bad_choice_fails_at_build_naming_key_and_allowed_values(repo_root, key, value, expected):
    cfg = cpu_cfg(repo_root, **{key: value})
    with pytest.raises(ValueError) as e:
        build_checked(cfg, ShapeSpec(channels=3))
    assert expected in str(e.value) and "allowed values" in str(e.value)


def test_in_features_must_have_doubling_strides(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.IN_FEATURES": ["res2", "res4", "res5"],
                                "MODEL.NESTED_FPN.NODE_CHANNELS": [32, 64, 128]})
    with pytest.raises(ValueError) as e:
        build_checked(cfg)
    assert "MODEL.NESTED_FPN.IN_FEATURES" in str(e.value) and "[4, 16, 32]" in str(e.value)


def test_node_channels_need_one_width_per_feature(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.NODE_CHANNELS": [32, 64]})
    with pytest.raises(ValueError, match="MODEL.NESTED_FPN.NODE_CHANNELS"):
        build_checked(cfg)


def test_in_features_the_resnet_does_not_output(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.RESNETS.OUT_FEATURES": ["res3", "res4", "res5"]})
    with pytest.raises(ValueError, match="MODEL.RESNETS.OUT_FEATURES"):
        build_checked(cfg)


def test_top_block_pools_the_coarsest_output_when_in_features_end_before_res5(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.IN_FEATURES": ["res2", "res3", "res4"],
                                "MODEL.NESTED_FPN.NODE_CHANNELS": [32, 64, 128]})
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert list(out) == ["p2", "p3", "p4", "p5"]
    assert backbone.output_shape()["p5"].stride == 32
    torch.testing.assert_close(out["p5"], out["p4"][..., ::2, ::2])
