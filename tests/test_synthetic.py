"""The synthetic disks shared by the scale, tiling and prediction tests."""
import cv2
import numpy as np
import pytest

from maskrcnnpp.data.synthetic import disks, full_masks


def labels_of(size, placed):
    """Each disk's id painted into one image; fails if two disks share a pixel."""
    labels = np.zeros(size, np.int32)
    for k, (y0, x0, window) in enumerate(placed, start=1):
        region = labels[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]]
        assert not (region[window] > 0).any()
        region[window] = k
    return labels


@pytest.mark.parametrize("gap", [0, 1, 4])
def test_disks_do_not_overlap_and_keep_the_gap(gap):
    size = (150, 170)
    image, placed = disks(size, np.linspace(6, 20, 40), seed=3, gap=gap)
    labels = labels_of(size, placed)
    np.testing.assert_array_equal(image[..., 0] > 100, labels > 0)
    assert len(placed) > 20
    kernel = np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)
    for k in range(1, len(placed) + 1):
        near = cv2.dilate((labels == k).astype(np.uint8), kernel).astype(bool)
        assert set(np.unique(labels[near])) <= {0, k}  # no other disk within gap pixels


def test_count_and_diameters_as_asked_inside_the_margin():
    size, diameters = (200, 240), [8, 10.5, 13, 17, 24]
    _, placed = disks(size, diameters, seed=0, gap=2, margin=3)
    assert len(placed) == len(diameters)
    for (y0, x0, window), d in zip(placed, diameters):
        assert abs(np.sqrt(4 * window.sum() / np.pi) - d) <= 1.0
        assert abs(window.shape[0] - d) <= 1 and abs(window.shape[1] - d) <= 1
        assert y0 >= 3 and x0 >= 3 and y0 + window.shape[0] <= size[0] - 3 and x0 + window.shape[1] <= size[1] - 3
        assert window[0].any() and window[-1].any() and window[:, 0].any() and window[:, -1].any()  # tight


def test_without_a_margin_disks_may_be_cut_by_the_border():
    size = (100, 100)
    _, placed = disks(size, [16] * 30, seed=1)
    masks = full_masks(size, placed)
    assert any(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() for m in masks)


def test_same_seed_same_disks_other_seed_other_disks():
    def layout(seed):
        image, placed = disks((120, 130), [9, 12, 15] * 5, seed=seed)
        return image.tobytes(), [(y0, x0, w.tobytes()) for y0, x0, w in placed]

    assert layout(7) == layout(7)
    assert layout(7) != layout(8)
