"""Config keys added by maskrcnnpp, all in one place.

Defaults reproduce the UNet++ paper where it has a setting; the nested FPN's
node widths were chosen from ``benchmarks/results/neck_cost_*.md`` so that
Mask R-CNN++ costs no more than Mask R-CNN.
"""
import math

import torch
from detectron2.config import CfgNode as CN

from .errors import ConfigError


def add_maskrcnnpp_config(cfg):
    """Add maskrcnnpp's keys to a Detectron2 config, in place."""
    _add_nested_fpn_config(cfg)
    _add_nuclei_config(cfg)
    _add_unetpp_config(cfg)
    _add_solver_config(cfg)
    _add_scale_config(cfg)


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
    # "" (none), "GN", "BN" or "SyncBN", for the nodes, laterals and output convs.
    cfg.MODEL.NESTED_FPN.NORM = ""
    # Groups of each GroupNorm when NORM is "GN" (Detectron2's get_norm always uses 32);
    # must divide NODE_CHANNELS and MODEL.FPN.OUT_CHANNELS.
    cfg.MODEL.NESTED_FPN.GN_GROUPS = 32
    # 0: every GroupNorm has GN_GROUPS groups. k > 0: a layer of C channels has
    # min(GN_GROUPS, C // k) groups, so narrow nodes are not normalised channel by channel
    # (32 channels in 32 groups is per-channel instance normalisation).
    cfg.MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP = 0
    # Node block: "fuse_conv" (1x1 fuse + 3x3, light) or "double_conv" (two 3x3, the paper's).
    cfg.MODEL.NESTED_FPN.BLOCK = "fuse_conv"
    # Upsampling of X^{i+1,j-1}: "nearest", "bilinear" or "transpose" (learned 2x2).
    cfg.MODEL.NESTED_FPN.UPSAMPLE = "nearest"


def _add_nuclei_config(cfg):
    # Also flip vertically during training. The nuclei configs do (microscopy has no up or
    # down); off by default, as in Detectron2, whose COCO configs must train unchanged.
    cfg.INPUT.VERTICAL_FLIP = False
    cfg.TEST.NUCLEI = CN()
    # Score threshold for foreground IoU/Dice and DSB mAP (the paper's 0.5).
    cfg.TEST.NUCLEI.SCORE_THRESHOLD = 0.5
    # Also compute COCO segm/bbox AP with Detectron2's COCOEvaluator.
    cfg.TEST.NUCLEI.COCO_AP = True


def _add_unetpp_config(cfg):
    """The semantic UNet++ (META_ARCHITECTURE "SemanticUNetPlusPlus") and its control groups."""
    cfg.MODEL.UNETPP = CN()
    # "plain" (the paper's: two 3x3 convs per level, 2x2 max-pool) or "resnet"
    # (Detectron2 ResNet configured by MODEL.RESNETS: stem conv, res2..res5).
    cfg.MODEL.UNETPP.ENCODER = "plain"
    # Width of each level, finest first (DEPTH + 1 entries): the plain encoder's
    # filters and the decoder nodes' widths. Wide U-Net: [35, 70, 140, 280, 560].
    cfg.MODEL.UNETPP.FILTERS = [32, 64, 128, 256, 512]
    # Down-samplings L; the grid has nodes X^{i,j} with i + j <= L.
    cfg.MODEL.UNETPP.DEPTH = 4
    # "unet++", "unet+", "unet_e" or "unet" (see nested_decoder.py).
    cfg.MODEL.UNETPP.CONNECTIVITY = "unet++"
    # 1x1 heads on X^{0,1} .. X^{0,L} trained jointly; otherwise one head on X^{0,L}.
    cfg.MODEL.UNETPP.DEEP_SUPERVISION = True
    # "ensemble" (average of all heads' probabilities) or "L1".."L<DEPTH>": prune
    # the model to the sub-network ending at X^{0,k} and use its head alone.
    cfg.MODEL.UNETPP.INFERENCE = "ensemble"
    # "" (the paper's: conv biases, no normalisation), "BN", "GN" or "SyncBN".
    cfg.MODEL.UNETPP.NORM = ""
    # Groups of each GroupNorm when NORM is "GN"; must divide the FILTERS in use.
    cfg.MODEL.UNETPP.GN_GROUPS = 32
    # Decoder node: "double_conv" (two 3x3, the paper's) or "fuse_conv" (1x1 + 3x3).
    cfg.MODEL.UNETPP.BLOCK = "double_conv"
    # "transpose" (the paper's 2x2 transposed conv), "nearest" or "bilinear".
    cfg.MODEL.UNETPP.UPSAMPLE = "transpose"
    cfg.MODEL.UNETPP.LOSS = CN()
    # Per head: BCE_WEIGHT * BCE + DICE_WEIGHT * (1 - soft Dice), averaged over heads.
    cfg.MODEL.UNETPP.LOSS.BCE_WEIGHT = 1.0
    cfg.MODEL.UNETPP.LOSS.DICE_WEIGHT = 1.0
    cfg.MODEL.UNETPP.LOSS.DICE_SMOOTH = 1.0
    # Side of the random square training crops (the paper: 96); a multiple of the
    # encoder's total stride (2^DEPTH for "plain", 2^(DEPTH+1) for "resnet").
    cfg.MODEL.UNETPP.PATCH_SIZE = 96
    cfg.MODEL.UNETPP.SLIDING_WINDOW = CN()
    # Inference on whole images by overlapping windows of SIZE pixels (0: one window,
    # the whole image); SIZE must be a multiple of the encoder's total stride.
    cfg.MODEL.UNETPP.SLIDING_WINDOW.SIZE = 96
    # Fraction of a window shared with the next one; overlaps are averaged.
    cfg.MODEL.UNETPP.SLIDING_WINDOW.OVERLAP = 0.5
    # Windows per forward pass.
    cfg.MODEL.UNETPP.SLIDING_WINDOW.BATCH_SIZE = 8


def _add_solver_config(cfg):
    # "SGD" (Detectron2's) or "ADAM" (the UNet++ paper's, with SOLVER.BASE_LR 3e-4).
    cfg.SOLVER.OPTIMIZER = "SGD"


SCALE_POLICIES = ("image_size", "diameter")
DIAMETER_SOURCES = ("estimate", "ground_truth")
DIAMETER_ESTIMATES = ("auto", "size_head", "search")


def _add_scale_config(cfg):
    """Scale by nucleus size (Cellpose-style) instead of by image size; see data/diameter.py."""
    # "image_size": Detectron2's ResizeShortestEdge (INPUT.MIN_SIZE_*). "diameter": every
    # image is rescaled so that its nuclei have INPUT.NUCLEUS_DIAMETER pixels (training:
    # the image's median ground-truth diameter; inference: --diameter or an estimate),
    # trained on random crops and predicted in overlapping tiles.
    cfg.INPUT.SCALE_POLICY = "image_size"
    # The working nucleus diameter, in pixels of the model's input (Cellpose's nuclei: 17).
    # DSB2018 stage1_train (per-image medians of the masks' equivalent diameters): median
    # 18.1 px, 10th-90th percentile 10.6-47.4, extremes 5.8 and 94.3; within an image the
    # largest nucleus is 1.46x the median (median), 2.8x (99th percentile), 5.5x at most.
    cfg.INPUT.NUCLEUS_DIAMETER = 17.0
    # Training: the scale is multiplied by a factor drawn log-uniformly from this range.
    cfg.INPUT.DIAMETER_JITTER = (0.8, 1.25)
    # Training: side of the random square crop taken at the working scale (an image
    # smaller than that is taken whole), so an iteration's cost does not grow with image size.
    cfg.INPUT.DIAMETER_CROP_SIZE = 256
    # Inference: nucleus diameter (original pixels) assumed by the first pass of the
    # diameter estimate, and used when that pass finds no nucleus to measure (DSB2018's
    # median is 18.1 px).
    cfg.TEST.DEFAULT_DIAMETER = 17.0
    # Side, in working-scale pixels, of the image's centre that each pass of the diameter
    # estimate predicts (the whole image when smaller): the estimate's cost stays bounded.
    cfg.TEST.DIAMETER_ESTIMATE_SIZE = 256
    # Evaluation under "diameter": "estimate" (as predict does without --diameter) or
    # "ground_truth" (each image's median annotated diameter: the estimate's upper bound).
    cfg.TEST.DIAMETER_SOURCE = "estimate"
    # How the diameter is estimated: "size_head" (a look or two of MODEL.SIZE_HEAD at the
    # image's centre), "search" (predicting the centre at successive guesses, several
    # times the cost), "auto": the size head when the weights carry one, else the search.
    cfg.TEST.DIAMETER_ESTIMATE = "auto"
    # After the size head's pass, the nuclei it found check its reading: when their median
    # diameter differs from it by more than this fraction, one more pass at their diameter
    # (chosen on val: size_estimate_val_check.md). 0.0: no check.
    cfg.TEST.SIZE_HEAD_CHECK = 0.15
    # The size head (modeling/size_head.py), trained after the detector with
    # maskrcnnpp-train-size-head: the bottom-up features it reads, its width, and the range
    # of view diameter / working diameter it is trained on.
    cfg.MODEL.SIZE_HEAD = CN()
    cfg.MODEL.SIZE_HEAD.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.SIZE_HEAD.CHANNELS = 64
    cfg.MODEL.SIZE_HEAD.VIEW_RANGE = (0.25, 4.0)
    # A file holding its weights (a "size_head" entry). Empty: the MODEL.WEIGHTS file's, when
    # the predictor loads the detector from it (model-zoo files carry both).
    cfg.MODEL.SIZE_HEAD.WEIGHTS = ""
    # Inference at the working scale: square tiles of TILE_SIZE pixels overlapping by at
    # least TILE_OVERLAP pixels, at least the largest nucleus expected (80 = 4.7x the working
    # diameter; DSB2018's 99th percentile is 2.8x); each nucleus is taken from the one tile
    # where it is whole.
    cfg.TEST.TILE_SIZE = 512
    cfg.TEST.TILE_OVERLAP = 80
    # RPN proposals a working-scale tile keeps after NMS: this many per nucleus-sized square
    # (NUCLEUS_DIAMETER^2 pixels) of it, at most MODEL.RPN.POST_NMS_TOPK_TEST. DSB2018's
    # densest images hold 0.6 nuclei per such square. 0.0: always POST_NMS_TOPK_TEST, the
    # default: on val, 2 per square lost more fg IoU than a fixed 500 at the same saving
    # (prediction_profile_val_proposals.md).
    cfg.TEST.PROPOSALS_PER_NUCLEUS = 0.0
    # Prediction on a CPU with channels-last (NHWC) tensors, which oneDNN's convolutions run
    # faster; the same nuclei (prediction_profile_channels_last.md).
    cfg.TEST.CHANNELS_LAST = True
    # With TEST.EVAL_PERIOD > 0: the evaluation result that chooses model_best.pth, as the
    # EvalHook stores it (e.g. "nuclei/fg_iou", "segm/AP"; higher is better). "": none kept.
    cfg.TEST.BEST_METRIC = ""
    # With TEST.BEST_METRIC: training ends after this many evaluations in a row without a
    # better score (its last weights become model_final.pth). 0: train to SOLVER.MAX_ITER.
    cfg.TEST.PATIENCE = 0


def check_scale_config(cfg):
    """Raise ConfigError naming the key(s) when the scale keys hold values that cannot work."""
    if cfg.INPUT.SCALE_POLICY not in SCALE_POLICIES:
        raise ConfigError(
            f"INPUT.SCALE_POLICY must be one of {', '.join(SCALE_POLICIES)}, not {cfg.INPUT.SCALE_POLICY!r}"
        )
    if cfg.TEST.DIAMETER_SOURCE not in DIAMETER_SOURCES:
        raise ConfigError(
            f"TEST.DIAMETER_SOURCE must be one of {', '.join(DIAMETER_SOURCES)}, not {cfg.TEST.DIAMETER_SOURCE!r}"
        )
    for key, value in (
        ("INPUT.NUCLEUS_DIAMETER", cfg.INPUT.NUCLEUS_DIAMETER),
        ("TEST.DEFAULT_DIAMETER", cfg.TEST.DEFAULT_DIAMETER),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{key} must be a positive number of pixels, not {value!r}")
    if cfg.TEST.DIAMETER_ESTIMATE not in DIAMETER_ESTIMATES:
        raise ConfigError(
            f"TEST.DIAMETER_ESTIMATE must be one of {', '.join(DIAMETER_ESTIMATES)}, not {cfg.TEST.DIAMETER_ESTIMATE!r}"
        )
    if not is_finite_number(cfg.TEST.PROPOSALS_PER_NUCLEUS) or cfg.TEST.PROPOSALS_PER_NUCLEUS < 0:
        raise ConfigError("TEST.PROPOSALS_PER_NUCLEUS must be a number >= 0 (0.0: always "
                          f"MODEL.RPN.POST_NMS_TOPK_TEST), not {cfg.TEST.PROPOSALS_PER_NUCLEUS!r}")
    if not is_finite_number(cfg.TEST.SIZE_HEAD_CHECK) or cfg.TEST.SIZE_HEAD_CHECK < 0:
        raise ConfigError(f"TEST.SIZE_HEAD_CHECK must be a fraction >= 0 (0.0: no check), not {cfg.TEST.SIZE_HEAD_CHECK!r}")
    view_range = tuple(cfg.MODEL.SIZE_HEAD.VIEW_RANGE)
    if len(view_range) != 2 or not all(is_finite_number(v) and v > 0 for v in view_range) or view_range[0] >= view_range[1]:
        raise ConfigError(f"MODEL.SIZE_HEAD.VIEW_RANGE must be (low, high) with 0 < low < high, not {view_range!r}")
    if int(cfg.MODEL.SIZE_HEAD.CHANNELS) < 1:
        raise ConfigError(f"MODEL.SIZE_HEAD.CHANNELS must be at least 1, not {cfg.MODEL.SIZE_HEAD.CHANNELS!r}")
    jitter = tuple(cfg.INPUT.DIAMETER_JITTER)
    if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
        raise ConfigError(f"INPUT.DIAMETER_JITTER must be (low, high) with 0 < low <= high, not {jitter!r}")
    if int(cfg.INPUT.DIAMETER_CROP_SIZE) < 1:
        raise ConfigError(f"INPUT.DIAMETER_CROP_SIZE must be at least 1, not {cfg.INPUT.DIAMETER_CROP_SIZE!r}")
    if int(cfg.TEST.DIAMETER_ESTIMATE_SIZE) < 1:
        raise ConfigError(
            f"TEST.DIAMETER_ESTIMATE_SIZE must be at least 1, not {cfg.TEST.DIAMETER_ESTIMATE_SIZE!r}"
        )
    if cfg.TEST.TILE_OVERLAP < 0:
        raise ConfigError(f"TEST.TILE_OVERLAP must be at least 0, not {cfg.TEST.TILE_OVERLAP!r}")
    if cfg.TEST.TILE_SIZE <= cfg.TEST.TILE_OVERLAP:
        raise ConfigError(
            f"TEST.TILE_SIZE ({cfg.TEST.TILE_SIZE}) must be larger than TEST.TILE_OVERLAP ({cfg.TEST.TILE_OVERLAP})"
        )


def is_finite_number(value):
    """A real int or float (not a bool), neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_solver_config(cfg):
    """Raise ConfigError naming the key when a schedule key a user edits cannot work.

    Steps past SOLVER.MAX_ITER are allowed (Detectron2 ignores them with a warning), so that
    ``SOLVER.MAX_ITER 20`` shortens a run without editing its steps.
    """
    s = cfg.SOLVER
    for key, value, least in (
        ("SOLVER.IMS_PER_BATCH", s.IMS_PER_BATCH, 1),
        ("SOLVER.MAX_ITER", s.MAX_ITER, 1),
        ("SOLVER.CHECKPOINT_PERIOD", s.CHECKPOINT_PERIOD, 1),
        ("SOLVER.WARMUP_ITERS", s.WARMUP_ITERS, 0),
        ("TEST.EVAL_PERIOD", cfg.TEST.EVAL_PERIOD, 0),
        ("TEST.PATIENCE", cfg.TEST.PATIENCE, 0),
    ):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            raise ConfigError(f"{key} must be a whole number of at least {least}, not {value!r}")
    if (cfg.TEST.BEST_METRIC or cfg.TEST.PATIENCE) and cfg.TEST.EVAL_PERIOD == 0:
        key = "TEST.BEST_METRIC" if cfg.TEST.BEST_METRIC else "TEST.PATIENCE"
        raise ConfigError(f"{key} needs evaluations during training: set TEST.EVAL_PERIOD to a number of iterations")
    if cfg.TEST.PATIENCE and not cfg.TEST.BEST_METRIC:
        raise ConfigError("TEST.PATIENCE counts evaluations without a better TEST.BEST_METRIC: set TEST.BEST_METRIC too")
    if not (is_finite_number(s.BASE_LR) and s.BASE_LR > 0):
        raise ConfigError(f"SOLVER.BASE_LR must be a positive number, not {s.BASE_LR!r}")
    if not (is_finite_number(s.GAMMA) and s.GAMMA > 0):
        raise ConfigError(f"SOLVER.GAMMA must be a positive number, not {s.GAMMA!r}")
    steps = list(s.STEPS)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in steps):
        raise ConfigError(f"SOLVER.STEPS must be positive iteration numbers, not {tuple(steps)!r}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"SOLVER.STEPS must increase, not {tuple(steps)!r}")


def check_device(device, num_gpus=1, key="MODEL.DEVICE", on_cpu="MODEL.DEVICE cpu"):
    """ConfigError when ``device`` (the config's ``key``) or the GPU count asks for CUDA on a machine
    without it; ``on_cpu``: the override that runs on the CPU instead, named in the message."""
    if torch.cuda.is_available():
        if num_gpus > torch.cuda.device_count():
            raise ConfigError(f"--num-gpus {num_gpus}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return
    if str(device).startswith("cuda"):
        raise ConfigError(f"{key} is {device} but no CUDA GPU is available here; add {on_cpu} to run on the CPU")
    if num_gpus > 1:
        raise ConfigError(f"--num-gpus {num_gpus}: no CUDA GPU is available here; train on the CPU with --num-gpus 1")
