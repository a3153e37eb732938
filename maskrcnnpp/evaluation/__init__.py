"""Nuclei evaluation: numpy metrics and a Detectron2 evaluator."""
from .nuclei_metrics import (
    DSB_IOU_THRESHOLDS,
    dsb_average_precision,
    foreground_iou_dice,
    label_image_to_masks,
    label_iou_matrix,
    masks_to_label_image,
    resolve_overlaps,
)
from .nuclei_evaluator import NucleiEvaluator

__all__ = [
    "DSB_IOU_THRESHOLDS",
    "NucleiEvaluator",
    "dsb_average_precision",
    "foreground_iou_dice",
    "label_image_to_masks",
    "label_iou_matrix",
    "masks_to_label_image",
    "resolve_overlaps",
]
