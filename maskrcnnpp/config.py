"""Config keys added by maskrcnnpp, all in one place.

Defaults reproduce the UNet++ paper where it has a setting; the nested FPN's
node widths were chosen from ``benchmarks/results/neck_cost_*.md`` so that
Mask R-CNN++ costs no more than Mask R-CNN.
"""
from detectron2.config import CfgNode as CN


def add_maskrcnnpp_config(cfg):
    """Add maskrcnnpp's keys to a Detectron2 config, in place."""
    _add_nested_fpn_config(cfg)
    _add_nuclei_config(cfg)


def _add_nested_fpn_config(cfg):
    cfg.MODEL.NESTED_FPN = CN()
    # ResNet stages feeding the grid, finest first; their strides must double
    # from one to the next (e.g. res2..res5 = strides 4, 8, 16, 32).
    cfg.MODEL.NESTED_FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Width of the grid's nodes at each level, finest first (one per IN_FEATURE).
    # Narrow fine levels keep the neck's FLOPs under FPN's; the outputs p2..p6
    # still have MODEL.FPN.OUT_CHANNELS channels for the RPN and ROI heads.
    cfg.MODEL.NESTED_FPN.NODE_CHANNELS = [64, 128, 256, 256]
    # "unet++" (dense skips), "unet+" (short skips), "unet_e" (ensemble of U-Nets),
    # "unet" (only the deepest decoder path).
    cfg.MODEL.NESTED_FPN.CONNECTIVITY = "unet++"
    # How a node merges its inputs: "concat" (UNet++) or "sum" (FPN-style).
    cfg.MODEL.NESTED_FPN.FUSE = "concat"
    # "" (none), "GN" or "BN", for the nodes, laterals and output convs.
    cfg.MODEL.NESTED_FPN.NORM = ""
    # Node block: "fuse_conv" (1x1 fuse + 3x3, light) or "double_conv" (two 3x3, the paper's).
    cfg.MODEL.NESTED_FPN.BLOCK = "fuse_conv"
    # Upsampling of X^{i+1,j-1}: "nearest", "bilinear" or "transpose" (learned 2x2).
    cfg.MODEL.NESTED_FPN.UPSAMPLE = "nearest"


def _add_nuclei_config(cfg):
    # Nuclei have no up/down orientation: flip vertically too during training.
    cfg.INPUT.VERTICAL_FLIP = True
    cfg.TEST.NUCLEI = CN()
    # Score threshold for foreground IoU/Dice and DSB mAP (the paper's 0.5).
    cfg.TEST.NUCLEI.SCORE_THRESHOLD = 0.5
    # Also compute COCO segm/bbox AP with Detectron2's COCOEvaluator.
    cfg.TEST.NUCLEI.COCO_AP = True
