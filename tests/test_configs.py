import glob
import json
import os

import pytest
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

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


def most_nuclei_in_an_evaluated_image(repo_root):
    """The most annotated nuclei of any DSB2018 test or val image, from the committed per-image records."""
    counts = [0]
    for path in glob.glob(os.path.join(repo_root, "benchmarks", "results", "nuclei_runs", "*", "*_seed*.json")):
        with open(path) as f:
            counts += [image.get("num_gt") or 0 for image in json.load(f)["per_image"]]
    return max(counts)


@pytest.mark.parametrize("name", [p for pair in PAIRS for p in pair])
def test_nuclei_configs_train_from_scratch_and_keep_every_nucleus(repo_root, name):
    cfg = load_cfg(os.path.join(repo_root, "configs/nuclei", name), ["MODEL.DEVICE", "cpu"])
    # No pretrained weights, so nothing may be frozen: every parameter trains, every norm learns.
    model = build_model(cfg)
    assert not cfg.MODEL.WEIGHTS and all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    most = most_nuclei_in_an_evaluated_image(repo_root)
    assert most > 300  # the records hold the crowded images
    assert cfg.TEST.DETECTIONS_PER_IMAGE >= most and cfg.MODEL.RPN.POST_NMS_TOPK_TEST >= most


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
