"""Mask R-CNN++ R-50, COCO 1x, as a LazyConfig: Detectron2's own LazyConfig baseline
(COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py: common/models/mask_rcnn_fpn.py, COCO data,
SGD, 1x schedule) with model.backbone replaced by the nested FPN, an L(...) of the module itself.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_R_50_NestedFPN_1x.py
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from maskrcnnpp.modeling.nested_fpn import NestedFPN

_baseline = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader, optimizer, lr_multiplier, train = (
    _baseline.dataloader, _baseline.optimizer, _baseline.lr_multiplier, _baseline.train)
model = _baseline.model

model.backbone = L(NestedFPN)(
    bottom_up=model.backbone.bottom_up,  # ResNet-50, FrozenBN, frozen up to res2 as in the baseline
    in_features=["res2", "res3", "res4", "res5"],
    node_channels=[64, 128, 256, 256],  # the YAML configs' MODEL.NESTED_FPN.NODE_CHANNELS
    out_channels=256,
    top_block=L(LastLevelMaxPool)(),
)
del _baseline
