"""Nuclei segmentation metrics in plain numpy (no Detectron2).

Conventions, the same everywhere in the project:

* Foreground IoU / Dice compare two boolean foreground maps; an image where
  both are empty scores 1.0 for both. Values here are fractions; the
  evaluator reports them in percent.
* DSB mAP is the 2018 Data Science Bowl metric: for each IoU threshold t in
  0.50:0.05:0.95, TP / (TP + FP + FN) with a prediction matched to a ground
  truth nucleus when IoU > t (strictly greater), averaged over thresholds.
  No ground truth and no prediction: 1; only one of the two: 0.
* Instances become label images (0 = background, k = k-th instance) so they
  never overlap:
  - predictions: each pixel goes to the highest-scoring instance, ties to the
    instance that comes first (Kaggle submissions could not overlap);
  - ground truth: each pixel goes to the first annotation covering it (the
    original DSB masks never overlap; the "fixed" masks may by 1-2 px).
  With equal scores both rules agree, so ground truth fed back as predictions
  gives identical label images and a perfect score.
"""
import numpy as np

__all__ = [
    "DSB_IOU_THRESHOLDS",
    "foreground_iou_dice",
    "foreground_counts",
    "resolve_overlaps",
    "masks_to_label_image",
    "label_image_to_masks",
    "dsb_average_precision",
    "label_iou_matrix",
]

# 0.50, 0.55, ..., 0.95; rounded so that e.g. 0.6 is exactly 0.6, not 0.6000000000000001.
DSB_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def foreground_counts(pred_fg, gt_fg):
    """Pixel counts (intersection, union, predicted area, ground-truth area)."""
    pred_fg = np.asarray(pred_fg, dtype=bool)
    gt_fg = np.asarray(gt_fg, dtype=bool)
    if pred_fg.shape != gt_fg.shape:
        raise ValueError(f"Foreground shapes differ: prediction {pred_fg.shape}, GT {gt_fg.shape}")
    intersection = int(np.count_nonzero(pred_fg & gt_fg))
    pred_area = int(np.count_nonzero(pred_fg))
    gt_area = int(np.count_nonzero(gt_fg))
    return intersection, pred_area + gt_area - intersection, pred_area, gt_area


def iou_dice_from_counts(intersection, union, pred_area, gt_area):
    """(IoU, Dice) as fractions; both empty counts as a perfect match."""
    if union == 0:
        return 1.0, 1.0
    return intersection / union, 2.0 * intersection / (pred_area + gt_area)


def foreground_iou_dice(pred_fg, gt_fg):
    """IoU and Dice (fractions) of two boolean foreground maps of one image."""
    return iou_dice_from_counts(*foreground_counts(pred_fg, gt_fg))


def _paint(masks, order, shape):
    """Label image where mask ``i`` paints value ``i + 1``, in ``order``; later paints win.
    A mask is an H x W array, or a crop (``y0``, ``x0``, boolean ``bits``) painted over its
    rectangle only."""
    labels = np.zeros(shape, dtype=np.int32)
    for i in order:
        mask = masks[i]
        if hasattr(mask, "bits"):
            height, width = mask.bits.shape
            labels[mask.y0 : mask.y0 + height, mask.x0 : mask.x0 + width][mask.bits] = i + 1
        else:
            labels[np.asarray(mask, dtype=bool)] = i + 1
    return labels


def _shape_of(masks, shape):
    if shape is not None:
        return tuple(shape)
    if len(masks) == 0:
        raise ValueError("shape is needed when there are no masks")
    return np.asarray(masks[0]).shape


def resolve_overlaps(masks, scores, shape=None):
    """Label image of predictions: each pixel to the highest-scoring mask covering it.

    ``masks`` is an N x H x W array, or a sequence of H x W masks or of crops (objects
    with ``y0``, ``x0`` and boolean ``bits``); the label of ``masks[i]`` is ``i + 1``.
    Equal scores: the earlier mask wins. Masks are read one at a time, so no N x H x W
    copy is made. ``shape`` is required for crops, and when N = 0.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(scores)} scores")
    # Paint from lowest to highest score; among ties the earliest paints last.
    order = np.lexsort((-np.arange(len(scores)), scores))
    return _paint(masks, order, _shape_of(masks, shape))


def masks_to_label_image(masks, shape=None):
    """Label image of ground-truth masks: each pixel to the first mask covering it."""
    return _paint(masks, range(len(masks) - 1, -1, -1), _shape_of(masks, shape))


def label_image_to_masks(labels):
    """List of boolean masks, one per label present (ascending); absent labels are dropped,
    e.g. predictions that lost all their pixels in :func:`resolve_overlaps`."""
    labels = np.asarray(labels)
    present = np.flatnonzero(np.bincount(labels.ravel())[1:]) + 1
    return [labels == k for k in present]


def _compact(labels):
    """Relabel to 1..K without gaps; returns (labels, K)."""
    counts = np.bincount(labels.ravel())
    present = np.flatnonzero(counts[1:]) + 1
    lookup = np.zeros(len(counts), dtype=np.int64)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[labels], len(present)


def label_iou_matrix(gt_labels, pred_labels):
    """IoU of every (GT, prediction) pair of two label images, shape K_gt x K_pred.

    One joint histogram of the label pairs gives all intersections at once.
    Labels are renumbered 1..K in ascending order first, dropping absent ones.
    """
    gt_labels = np.asarray(gt_labels)
    pred_labels = np.asarray(pred_labels)
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(
            f"Label shapes differ: GT {gt_labels.shape}, prediction {pred_labels.shape}"
        )
    gt, num_gt = _compact(gt_labels)
    pred, num_pred = _compact(pred_labels)
    joint = np.bincount(
        (gt * (num_pred + 1) + pred).ravel(), minlength=(num_gt + 1) * (num_pred + 1)
    ).reshape(num_gt + 1, num_pred + 1)
    intersection = joint[1:, 1:]
    gt_area = joint[1:, :].sum(axis=1)
    pred_area = joint[:, 1:].sum(axis=0)
    union = gt_area[:, None] + pred_area[None, :] - intersection
    return intersection / np.maximum(union, 1)


def dsb_average_precision(gt, pred_labels, thresholds=DSB_IOU_THRESHOLDS):
    """DSB 2018 score of one image: (mean over thresholds, per-threshold list).

    ``gt`` is a label image (2-D integer array) or a sequence / N x H x W array
    of boolean masks (then made a label image with the first-mask-wins rule).
    ``pred_labels`` is a label image, e.g. from :func:`resolve_overlaps`.
    """
    if min(thresholds) < 0.5:
        raise ValueError("Counting IoU > t pairs is one-to-one matching only for t >= 0.5")
    pred_labels = np.asarray(pred_labels)
    gt_labels = _as_gt_labels(gt, pred_labels.shape)
    iou = label_iou_matrix(gt_labels, pred_labels)
    num_gt, num_pred = iou.shape
    if num_gt == 0 or num_pred == 0:
        score = 1.0 if num_gt == num_pred else 0.0
        return score, [score] * len(thresholds)
    per_threshold = []
    for t in thresholds:
        # Within a label image instances are disjoint, so at IoU > 0.5 a GT
        # nucleus overlaps at most one prediction that much and vice versa:
        # counting pairs is one-to-one matching.
        tp = int(np.count_nonzero(iou > t))
        per_threshold.append(tp / (num_gt + num_pred - tp))
    return float(np.mean(per_threshold)), per_threshold


def _as_gt_labels(gt, shape):
    if isinstance(gt, np.ndarray) and gt.ndim == 2:  # already a label image (bool: one nucleus)
        return gt.astype(np.int64, copy=False)
    return masks_to_label_image(gt, shape)
