import os

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead, build_mask_head
from torch import nn

from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.modeling import MaskRCNNMatmulUpsampleHead, upsample_and_predict

CPU_CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
ZOO_CONFIG = "maskrcnnpp/model_zoo/R18_NestedFPN_dsb2018/config.yaml"


@pytest.mark.parametrize("n, c, o, k, h, w", [(5, 16, 8, 1, 14, 14), (3, 6, 10, 4, 7, 9), (1, 4, 4, 2, 1, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_matrix_products_equal_transposed_conv_then_predictor(n, c, o, k, h, w, bias):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(c, o, 2, stride=2, bias=bias)
    predictor = nn.Conv2d(o, k, 1, bias=bias)
    x = torch.randn(n, c, h, w)
    expected = predictor(torch.relu(deconv(x)))
    got = upsample_and_predict(x, deconv, predictor)
    assert got.shape == expected.shape == (n, k, 2 * h, 2 * w)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def heads(repo_root, num_classes=1):
    cfg = load_cfg(os.path.join(repo_root, CPU_CONFIG))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    shape = ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS, width=14, height=14)
    ours = build_mask_head(cfg, shape)
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    theirs = build_mask_head(cfg, shape)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize("num_classes", [1, 3])
def test_the_head_takes_detectron2s_checkpoints_and_predicts_the_same_masks(repo_root, num_classes):
    torch.manual_seed(0)
    ours, theirs = heads(repo_root, num_classes)
    assert type(ours) is MaskRCNNMatmulUpsampleHead
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.eval(), theirs.eval()
    # the predictor is initialised tiny; larger weights make a mismatch visible
    nn.init.normal_(ours.predictor.weight, std=0.5)
    nn.init.normal_(ours.predictor.bias, std=0.5)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(7, ours.deconv.in_channels, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(ours.layers(x), theirs.layers(x), rtol=1e-4, atol=1e-4)
        assert ours.layers(x[:0]).shape == (0, num_classes, 28, 28)


def test_training_takes_detectron2s_path_and_gradients(repo_root):
    torch.manual_seed(0)
    ours, theirs = heads(repo_root)
    x = torch.randn(3, ours.deconv.in_channels, 14, 14)
    ours.train(), theirs.train()
    ours.layers(x).sum().backward()
    theirs.layers(x).sum().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize("config", [CPU_CONFIG, ZOO_CONFIG])
def test_nuclei_models_are_built_with_it(repo_root, config):
    cfg = load_cfg(os.path.join(repo_root, config))
    model = build_model(cfg)
    assert type(model.roi_heads.mask_head) is MaskRCNNMatmulUpsampleHead
    assert isinstance(model.roi_heads.mask_head, MaskRCNNConvUpsampleHead)
