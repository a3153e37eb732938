"""The nested FPN for every FPN model of Detectron2's model zoo: COCO-style twins of its configs,
differing only in the backbone section, that build, train and evaluate on synthetic COCO data."""
import os
import pickle
import re

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.modeling import build_backbone, build_model

from maskrcnnpp.data.synthetic_coco import register_synthetic_coco, write_synthetic_coco
from maskrcnnpp.engine import NucleiCheckpointer, Trainer
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError

# our config -> Detectron2's model-zoo config it is the twin of
TWINS = {
    "COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_1x.yaml": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_3x.yaml": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    "COCO-InstanceSegmentation/mask_rcnn_R_101_NestedFPN_3x.yaml": "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml",
    "COCO-Detection/faster_rcnn_R_50_NestedFPN_1x.yaml": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "COCO-Detection/faster_rcnn_R_50_NestedFPN_3x.yaml": "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/retinanet_R_50_NestedFPN_1x.yaml": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
    "COCO-Detection/retinanet_R_50_NestedFPN_3x.yaml": "COCO-Detection/retinanet_R_50_FPN_3x.yaml",
    "COCO-PanopticSegmentation/panoptic_nested_fpn_R_50_1x.yaml": "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml",
    "COCO-PanopticSegmentation/panoptic_nested_fpn_R_50_3x.yaml": "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml",
    "Misc/cascade_mask_rcnn_R_50_NestedFPN_1x.yaml": "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
    "Misc/cascade_mask_rcnn_R_50_NestedFPN_3x.yaml": "Misc/cascade_mask_rcnn_R_50_FPN_3x.yaml",
    "COCO-Keypoints/keypoint_rcnn_R_50_NestedFPN_1x.yaml": "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
    "COCO-Keypoints/keypoint_rcnn_R_50_NestedFPN_3x.yaml": "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/rpn_R_50_NestedFPN_1x.yaml": "COCO-Detection/rpn_R_50_FPN_1x.yaml",
}
# one per model family: (our config, the synthetic dataset it trains on)
FAMILIES = {
    "mask_rcnn": ("COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}"),
    "faster_rcnn": ("COCO-Detection/faster_rcnn_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}"),
    "retinanet": ("COCO-Detection/retinanet_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}"),
    "panoptic_fpn": ("COCO-PanopticSegmentation/panoptic_nested_fpn_R_50_1x.yaml", "synthetic_coco_{}_separated"),
    "cascade_mask_rcnn": ("Misc/cascade_mask_rcnn_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}"),
    "keypoint_rcnn": ("COCO-Keypoints/keypoint_rcnn_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}_keypoints"),
    "rpn": ("COCO-Detection/rpn_R_50_NestedFPN_1x.yaml", "synthetic_coco_{}"),
}
# a loss only that family's heads give, and what COCOEvaluator scores its predictions by (a model two
# iterations old finds no keypoints yet, so Keypoint R-CNN is scored on its boxes)
HEAD_LOSS = {"mask_rcnn": "loss_mask", "faster_rcnn": "loss_box_reg", "retinanet": "loss_cls",
             "panoptic_fpn": "loss_sem_seg", "cascade_mask_rcnn": "loss_box_reg_stage2",
             "keypoint_rcnn": "loss_keypoint", "rpn": "loss_rpn_cls"}
EVALUATED = {"rpn": "box_proposals/AR@1000"}
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
         "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
         # from scratch the FrozenBN ResNet is unnormalised and diverges: GroupNorm, as Detectron2's scratch configs
         "MODEL.RESNETS.NORM", "GN", "MODEL.NESTED_FPN.NORM", "GN"]


def ours(repo_root, name, opts=()):
    return load_cfg(os.path.join(repo_root, "configs", name), list(opts))


def detectron2s(name, opts=()):
    return load_cfg(model_zoo.get_config_file(name), list(opts))


def without_backbone_section(cfg):
    cfg = cfg.clone()
    cfg.MODEL.BACKBONE.NAME = "-"
    del cfg.MODEL["NESTED_FPN"]
    return cfg.dump()


@pytest.mark.parametrize("name", sorted(TWINS))
def test_twin_differs_from_detectron2s_config_only_in_the_backbone(repo_root, name):
    nested, fpn = ours(repo_root, name), detectron2s(TWINS[name])
    assert "nested_fpn" in nested.MODEL.BACKBONE.NAME and "nested" not in fpn.MODEL.BACKBONE.NAME
    assert without_backbone_section(nested) == without_backbone_section(fpn)
    assert nested.MODEL.WEIGHTS.startswith("detectron2://ImageNetPretrained/MSRA/R-")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_twin_backbone_has_fpns_outputs_and_every_neck_parameter_learns(repo_root, family):
    name = FAMILIES[family][0]
    nested_cfg, fpn_cfg = ours(repo_root, name, ["MODEL.DEVICE", "cpu"]), detectron2s(TWINS[name], ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    nested, fpn = build_backbone(nested_cfg), build_backbone(fpn_cfg)
    assert {k: (s.channels, s.stride) for k, s in nested.output_shape().items()} == \
        {k: (s.channels, s.stride) for k, s in fpn.output_shape().items()}
    assert nested.size_divisibility == fpn.size_divisibility
    outputs = nested(torch.randn(1, 3, 128, 160))
    assert list(outputs) == list(fpn(torch.randn(1, 3, 128, 160)))
    sum(o.square().mean() for o in outputs.values()).backward()
    neck = [(n, p) for n, p in nested.named_parameters() if not n.startswith("bottom_up.")]
    assert neck and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in neck), \
        [n for n, p in neck if p.grad is None or p.grad.abs().sum() == 0]


@pytest.fixture(scope="module")
def synthetic_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    write_synthetic_coco(root, images=(4, 2), size=(128, 160))
    return register_synthetic_coco(root)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_twin_trains_and_evaluates_on_synthetic_coco(repo_root, tmp_path, synthetic_coco, family):
    name, dataset = FAMILIES[family]
    cfg = ours(repo_root, name, SMALL + ["DATASETS.TRAIN", f"('{dataset.format('train')}',)",
                                         "DATASETS.TEST", f"('{dataset.format('val')}',)",
                                         "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # its evaluation hook runs after the last iteration
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 2 and all(np.isfinite(v) for v, _ in losses)
    assert HEAD_LOSS[family] in trainer.storage.histories()
    assert EVALUATED.get(family, "bbox/AP") in trainer.storage.histories()  # evaluated by COCOEvaluator


def test_synthetic_set_never_replaces_a_real_coco(tmp_path):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "instances_train2017.json").write_text("{}")
    with pytest.raises(UserError, match="exists and is not a synthetic dataset"):
        write_synthetic_coco(str(tmp_path))
    assert os.listdir(tmp_path / "coco") == ["annotations"]
    write_synthetic_coco(str(tmp_path / "again"), images=(1, 1), size=(64, 64))
    write_synthetic_coco(str(tmp_path / "again"), images=(2, 1), size=(64, 64))  # a synthetic one is replaced
    assert len(os.listdir(tmp_path / "again" / "coco" / "train2017")) == 2


def c2_name(key):
    """Detectron2's name of a ResNet parameter as Caffe2's MSRA ImageNet .pkl names it."""
    key = re.sub(r"^stem\.conv1\.norm\.", "res_conv1_bn.", key)
    key = re.sub(r"^stem\.conv1\.", "conv1.", key)
    for d2, c2 in ((".shortcut.", ".branch1."), (".conv1.", ".branch2a."), (".conv2.", ".branch2b."),
                   (".conv3.", ".branch2c.")):
        key = key.replace(d2, c2)
    key = key.replace(".norm.weight", "_bn_s").replace(".norm.bias", "_bn_b").replace("_bn.weight", "_bn_s")
    key = key.replace("_bn.bias", "_bn_b").replace(".weight", "_w")
    return key.replace(".", "_")


def test_imagenet_weights_load_into_the_bottom_up_and_leave_the_neck_to_train(repo_root, tmp_path):
    small = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.WIDTH_PER_GROUP", "8", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
             "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"]
    name = "COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_1x.yaml"
    torch.manual_seed(1)
    resnet = build_backbone(detectron2s(TWINS[name], small)).bottom_up
    blobs = {c2_name(k): v.numpy() for k, v in resnet.state_dict().items()
             if not k.endswith(("running_mean", "running_var"))}  # MSRA's FrozenBN: scale and bias only
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_s" in blobs and "res5_2_branch2c_bn_b" in blobs
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)

    cfg = ours(repo_root, name, small + ["MODEL.WEIGHTS", str(path), "OUTPUT_DIR", str(tmp_path), "DATASETS.TRAIN", "()"])
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    NucleiCheckpointer(model).load(str(path))  # Detectron2's .pkl path: align_and_update_state_dicts
    after = model.state_dict()
    for key, value in resnet.state_dict().items():
        if not key.endswith(("running_mean", "running_var")):
            assert torch.equal(after[f"backbone.bottom_up.{key}"], value), key
    untouched = {k for k in after if torch.equal(after[k], before[k]) and not k.startswith("backbone.bottom_up.")}
    neck = {k for k in after if k.startswith("backbone.") and not k.startswith("backbone.bottom_up.")}
    assert neck <= untouched  # the nested neck starts from its initialisation
    assert any(k.startswith("backbone.decoder.") for k in neck)
    assert {k.split(".")[1] for k in neck} == {"fpn_lateral2", "fpn_lateral3", "fpn_lateral4", "fpn_lateral5",
                                              "fpn_output2", "fpn_output3", "fpn_output4", "fpn_output5", "decoder"}


@pytest.mark.parametrize("family", ["mask_rcnn", "retinanet"])
def test_twin_neck_costs_no_more_flops_than_fpns_at_its_default_widths(repo_root, family):
    from benchmarks.costs.neck_cost import neck_cost

    name = FAMILIES[family][0]  # the other families share Mask R-CNN's backbone section
    x = torch.randn(1, 3, 256, 352)
    nested = neck_cost(build_backbone(ours(repo_root, name, ["MODEL.DEVICE", "cpu"])), x)
    fpn = neck_cost(build_backbone(detectron2s(TWINS[name], ["MODEL.DEVICE", "cpu"])), x)
    assert 0 < nested["neck_gmacs"] <= fpn["neck_gmacs"]
    assert nested["bottom_up_gmacs"] == pytest.approx(fpn["bottom_up_gmacs"])


@pytest.mark.parametrize("family", ["faster_rcnn", "panoptic_fpn", "cascade_mask_rcnn", "keypoint_rcnn", "rpn"])
def test_other_twins_share_mask_rcnns_backbone_section(repo_root, family):
    mask = ours(repo_root, FAMILIES["mask_rcnn"][0])
    other = ours(repo_root, FAMILIES[family][0])
    assert other.MODEL.BACKBONE == mask.MODEL.BACKBONE and other.MODEL.NESTED_FPN == mask.MODEL.NESTED_FPN
    assert other.MODEL.FPN == mask.MODEL.FPN and other.MODEL.RESNETS == mask.MODEL.RESNETS
