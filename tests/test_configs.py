import glob
import os

import pytest

from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.modeling.nested_fpn import validate_nested_fpn_config

PAIRS = [
    ("mask_rcnn_R_18_FPN_cpu.yaml", "mask_rcnn_R_18_NestedFPN_cpu.yaml"),
    ("mask_rcnn_R_50_FPN.yaml", "mask_rcnn_R_50_NestedFPN.yaml"),
    ("mask_rcnn_R_101_FPN.yaml", "mask_rcnn_R_101_NestedFPN.yaml"),
]


def flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("fpn, nested", PAIRS)
def test_pairs_differ_only_in_the_backbone(repo_root, fpn, nested):
    a = flatten(load_cfg(os.path.join(repo_root, "configs/nuclei", fpn)))
    b = flatten(load_cfg(os.path.join(repo_root, "configs/nuclei", nested)))
    differing = {k for k in a if a[k] != b[k]}
    assert differing and all(
        k == "MODEL.BACKBONE.NAME" or k.startswith("MODEL.NESTED_FPN.") for k in differing
    ), differing
    assert b["MODEL.BACKBONE.NAME"] == "build_resnet_nested_fpn_backbone"


@pytest.mark.parametrize("name", [p for pair in PAIRS for p in pair])
def test_nuclei_configs_train_from_scratch_and_allow_375_nuclei(repo_root, name):
    cfg = load_cfg(os.path.join(repo_root, "configs/nuclei", name))
    assert cfg.MODEL.WEIGHTS == ""
    assert cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.TEST.DETECTIONS_PER_IMAGE >= 375
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TEST >= 375
    assert cfg.INPUT.MASK_FORMAT == "bitmask"


@pytest.mark.parametrize("name", [nested for _, nested in PAIRS])
def test_nested_widths_split_into_the_group_norm_groups(repo_root, name):
    cfg = load_cfg(os.path.join(repo_root, "configs/nuclei", name))
    assert cfg.MODEL.NESTED_FPN.NORM == "GN" and cfg.MODEL.NESTED_FPN.GN_GROUPS == 32
    validate_nested_fpn_config(cfg)  # raises, naming the keys, if a width does not split


def test_every_config_loads(repo_root):
    files = glob.glob(os.path.join(repo_root, "configs", "**", "*.yaml"), recursive=True)
    assert len(files) >= 9
    for path in files:
        load_cfg(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_cfg(str(tmp_path / "nope.yaml"))
