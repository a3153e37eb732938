import numpy as np
import pytest

from maskrcnnpp.evaluation.nuclei_metrics import (
    DSB_IOU_THRESHOLDS,
    dsb_average_precision,
    foreground_iou_dice,
    label_image_to_masks,
    label_iou_matrix,
    masks_to_label_image,
    resolve_overlaps,
)

SHAPE = (40, 50)


def rect(y0, x0, height, width, shape=SHAPE):
    mask = np.zeros(shape, dtype=bool)
    mask[y0 : y0 + height, x0 : x0 + width] = True
    return mask


def evaluate(gt_masks, pred_masks, scores=None):
    """(fg IoU, fg Dice, DSB mAP, per-threshold APs) of masks, all fractions."""
    scores = np.ones(len(pred_masks)) if scores is None else scores
    pred_labels = resolve_overlaps(pred_masks, scores, SHAPE)
    gt_labels = masks_to_label_image(gt_masks, SHAPE)
    iou, dice = foreground_iou_dice(pred_labels > 0, gt_labels > 0)
    dsb_map, per_threshold = dsb_average_precision(gt_masks, pred_labels)
    return iou, dice, dsb_map, per_threshold


def test_thresholds():
    assert DSB_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_prediction():
    gt = [rect(2, 2, 4, 4), rect(10, 10, 4, 4)]
    iou, dice, dsb_map, per_threshold = evaluate(gt, gt)
    assert (iou, dice, dsb_map) == (1.0, 1.0, 1.0)
    assert per_threshold == [1.0] * 10


def test_one_missed_nucleus_of_two():
    gt = [rect(2, 2, 4, 4), rect(10, 10, 4, 4)]  # 16 px each
    iou, dice, dsb_map, per_threshold = evaluate(gt, gt[:1])
    # Foreground: intersection 16, union 32 -> IoU 1/2; Dice 2*16 / (16 + 32) = 2/3.
    assert iou == pytest.approx(0.5)
    assert dice == pytest.approx(2 / 3)
    # Every threshold: TP 1, FP 0, FN 1 -> 1 / (1 + 0 + 1) = 1/2.
    assert per_threshold == [0.5] * 10
    assert dsb_map == pytest.approx(0.5)


def test_shifted_mask_counts_only_thresholds_below_its_iou():
    # 10 x 13 rectangle shifted 3 columns: intersection 10*10 = 100,
    # union 130 + 130 - 100 = 160 -> IoU 0.625, between 0.60 and 0.65.
    gt = [rect(5, 5, 10, 13)]
    pred = [rect(5, 8, 10, 13)]
    iou, dice, dsb_map, per_threshold = evaluate(gt, pred)
    assert iou == pytest.approx(0.625)
    assert dice == pytest.approx(200 / 260)
    # Matched (TP 1 -> 1.0) at 0.50, 0.55, 0.60; unmatched (TP 0, FP 1, FN 1 -> 0) above.
    assert per_threshold == [1.0, 1.0, 1.0] + [0.0] * 7
    assert dsb_map == pytest.approx(0.3)


@pytest.mark.parametrize(
    "width, shift, expected_matches",
    [
        (20, 5, 2),  # IoU 15/25 = 0.6 exactly: matched at 0.50, 0.55, not at 0.60
        (15, 5, 0),  # IoU 10/20 = 0.5 exactly: not matched even at 0.50
    ],
)
def test_match_needs_iou_strictly_greater_than_threshold(width, shift, expected_matches):
    gt = [rect(5, 5, 10, width)]
    pred = [rect(5, 5 + shift, 10, width)]
    _, _, dsb_map, per_threshold = evaluate(gt, pred)
    assert per_threshold == [1.0] * expected_matches + [0.0] * (10 - expected_matches)
    assert dsb_map == pytest.approx(expected_matches / 10)


def test_no_predictions():
    iou, dice, dsb_map, per_threshold = evaluate([rect(2, 2, 4, 4)], [])
    assert (iou, dice, dsb_map) == (0.0, 0.0, 0.0)
    assert per_threshold == [0.0] * 10


def test_no_ground_truth_and_no_predictions():
    iou, dice, dsb_map, per_threshold = evaluate([], [])
    assert (iou, dice, dsb_map) == (1.0, 1.0, 1.0)
    assert per_threshold == [1.0] * 10


def test_predictions_without_ground_truth():
    iou, dice, dsb_map, per_threshold = evaluate([], [rect(2, 2, 4, 4)])
    assert (iou, dice, dsb_map) == (0.0, 0.0, 0.0)
    assert per_threshold == [0.0] * 10


def test_one_nucleus_split_in_two_halves_matches_nothing():
    # Each half has IoU 20/40 = 0.5, not > 0.5: TP 0, FP 2, FN 1 -> 0.
    gt = [rect(0, 0, 5, 8)]
    pred = [rect(0, 0, 5, 4), rect(0, 4, 5, 4)]
    iou, _, dsb_map, _ = evaluate(gt, pred)
    assert iou == 1.0 and dsb_map == 0.0


def test_overlap_goes_to_the_higher_score():
    low, high = rect(0, 0, 4, 6), rect(0, 3, 4, 6)  # overlap: columns 3..5
    labels = resolve_overlaps([low, high], [0.6, 0.9])
    assert (labels[:4, 3:6] == 2).all()
    assert (labels[:4, :3] == 1).all() and (labels[:4, 6:9] == 2).all()
    # Same masks in the other order: the pixel still follows the score.
    labels = resolve_overlaps([high, low], [0.9, 0.6])
    assert (labels[:4, 3:6] == 1).all()


def test_equal_scores_give_the_overlap_to_the_first_mask():
    a, b = rect(0, 0, 4, 6), rect(0, 3, 4, 6)
    assert (resolve_overlaps([a, b], [0.7, 0.7])[:4, 3:6] == 1).all()
    assert (resolve_overlaps([b, a], [0.7, 0.7])[:4, 3:6] == 1).all()


def test_instance_that_loses_all_pixels_is_dropped():
    big, inside = rect(0, 0, 10, 10), rect(2, 2, 3, 3)
    labels = resolve_overlaps([inside, big], [0.5, 0.9])
    masks = label_image_to_masks(labels)
    assert len(masks) == 1 and np.array_equal(masks[0], big)
    # Its score is lower, so it no longer counts as a false positive.
    assert dsb_average_precision([big], labels)[0] == 1.0


def test_ground_truth_overlap_goes_to_the_first_mask():
    first, second = rect(0, 0, 4, 6), rect(0, 5, 4, 6)  # one shared column
    labels = masks_to_label_image([first, second])
    assert (labels[:4, 5] == 1).all()
    assert np.count_nonzero(labels == 2) == 4 * 5


def test_empty_input_needs_a_shape():
    with pytest.raises(ValueError):
        resolve_overlaps([], [])
    assert resolve_overlaps([], [], SHAPE).shape == SHAPE


def test_gt_label_image_and_gt_masks_agree():
    gt = [rect(2, 2, 4, 4), rect(10, 10, 4, 4)]
    pred = resolve_overlaps([rect(2, 3, 4, 4)], [1.0])
    from_masks = dsb_average_precision(gt, pred)
    from_labels = dsb_average_precision(masks_to_label_image(gt), pred)
    assert from_masks == from_labels


def test_iou_matrix_matches_pairwise_computation():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, size=(30, 30))
    pred = rng.integers(0, 4, size=(30, 30)) * 3  # labels 0, 3, 6, 9: gaps are dropped
    iou = label_iou_matrix(gt, pred)
    assert iou.shape == (5, 3)
    for i, g in enumerate(range(1, 6)):
        for j, p in enumerate((3, 6, 9)):
            a, b = gt == g, pred == p
            assert iou[i, j] == pytest.approx((a & b).sum() / (a | b).sum())
