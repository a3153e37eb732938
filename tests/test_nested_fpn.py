import os

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.utils.events import EventStorage

import synthetic
from maskrcnnpp.engine.setup import load_cfg
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


def test_backbone_is_registered_on_import():
    assert "build_resnet_nested_fpn_backbone" in BACKBONE_REGISTRY
    assert BACKBONE_REGISTRY.get("build_resnet_nested_fpn_backbone") is (
        build_resnet_nested_fpn_backbone
    )


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
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
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
        build_backbone(cfg, ShapeSpec(channels=3))
    assert expected in str(e.value) and "allowed values" in str(e.value)


def test_in_features_must_have_doubling_strides(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.IN_FEATURES": ["res2", "res4", "res5"],
                                "MODEL.NESTED_FPN.NODE_CHANNELS": [32, 64, 128]})
    with pytest.raises(ValueError) as e:
        build_backbone(cfg)
    assert "MODEL.NESTED_FPN.IN_FEATURES" in str(e.value) and "[4, 16, 32]" in str(e.value)


def test_node_channels_need_one_width_per_feature(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.NESTED_FPN.NODE_CHANNELS": [32, 64]})
    with pytest.raises(ValueError, match="MODEL.NESTED_FPN.NODE_CHANNELS"):
        build_backbone(cfg)


def test_in_features_the_resnet_does_not_output(repo_root):
    cfg = cpu_cfg(repo_root, **{"MODEL.RESNETS.OUT_FEATURES": ["res3", "res4", "res5"]})
    with pytest.raises(ValueError, match="MODEL.RESNETS.OUT_FEATURES"):
        build_backbone(cfg)
