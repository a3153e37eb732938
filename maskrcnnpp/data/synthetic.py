"""Small synthetic nuclei images for tests and benchmarks: bright ellipses on a noisy background,
and bright disks kept a given gap apart (masks as small windows, so thousands stay cheap)."""
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from .segmentation import encode_mask

__all__ = ["ellipse_mask", "disks", "full_masks", "make_image", "to_record", "make_dataset"]


def ellipse_mask(height, width, cy, cx, ry, rx):
    yy, xx = np.ogrid[:height, :width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def disks(size, diameters, seed=0, gap=1, margin=None, tries=200):
    """Bright disks (200) on a dark image (20), one per diameter, in order, where one fits.

    ``gap``: at least this many background pixels between two disks along any row, column or
    diagonal (1: apart as 8-connected components; 0: they may touch but never overlap).
    ``margin``: None lets a disk be cut by the image border (its centre lies anywhere in the
    image); a number keeps every disk whole and at least that many pixels inside the border.
    ``tries``: random positions tried for each disk before it is left out.

    Returns (H x W x 3 uint8 image, [(y0, x0, window)]): per disk placed, its bool mask in the
    tight window whose top-left pixel is (y0, x0). The work is done in windows around each disk,
    so many disks in a large image cost about one image of memory, not one per disk.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    taken = np.zeros((height, width), bool)
    kernel = np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)
    placed = []
    for d in diameters:
        r = d / 2.0
        if margin is None:
            low_y, high_y, low_x, high_x = 0.0, height, 0.0, width
        else:
            low_y, high_y, low_x, high_x = r + margin, height - r - margin, r + margin, width - r - margin
            if high_y < low_y or high_x < low_x:
                continue  # cannot lie whole inside the margin
        for _ in range(tries):
            cy, cx = rng.uniform(low_y, high_y), rng.uniform(low_x, high_x)
            # the disk's window with room for the gap around it, inside the image
            y0, y1 = max(0, int(cy - r) - gap - 1), min(height, int(cy + r) + gap + 2)
            x0, x1 = max(0, int(cx - r) - gap - 1), min(width, int(cx + r) + gap + 2)
            local = ellipse_mask(y1 - y0, x1 - x0, cy - y0, cx - x0, r, r)
            if not local.any():
                continue
            grown = cv2.dilate(local.astype(np.uint8), kernel).astype(bool) if gap > 0 else local
            if (grown & taken[y0:y1, x0:x1]).any():
                continue
            taken[y0:y1, x0:x1] |= local
            rows, cols = np.flatnonzero(local.any(1)), np.flatnonzero(local.any(0))
            window = local[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            placed.append((y0 + int(rows[0]), x0 + int(cols[0]), window))
            break
    image = np.where(taken, 200, 20).astype(np.uint8)
    return np.repeat(image[:, :, None], 3, axis=2), placed


def full_masks(size, placed):
    """Full-size bool masks from ``disks``' (y0, x0, window) triples."""
    masks = []
    for y0, x0, window in placed:
        m = np.zeros(size, bool)
        m[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = window
        masks.append(m)
    return masks


def make_image(rng, height, width, max_nuclei=8):
    """One grey image with non-overlapping ellipses; returns (uint8 HxWx3, [bool masks])."""
    image = rng.normal(30, 8, size=(height, width))
    taken = np.zeros((height, width), bool)
    masks = []
    for _ in range(50 * max_nuclei):
        if len(masks) == max_nuclei:
            break
        ry, rx = rng.uniform(5, 14, size=2)
        cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
        m = ellipse_mask(height, width, cy, cx, ry, rx)
        if (m & taken).any():
            continue
        taken |= m
        masks.append(m)
        image[m] = rng.normal(170, 20)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image[:, :, None], 3, axis=2), masks


def to_record(path, image_id, image, masks):
    annotations = []
    for m in masks:
        rle = encode_mask(m)
        x, y, w, h = mask_util.toBbox(rle).tolist()
        annotations.append(
            {"bbox": [x, y, w, h], "bbox_mode": 1, "category_id": 0, "segmentation": rle,
             "iscrowd": 0}
        )
    return {"file_name": path, "image_id": image_id, "height": image.shape[0],
            "width": image.shape[1], "annotations": annotations}


def make_dataset(folder, num_images=6, size=(128, 160), seed=0):
    """Write PNGs into ``folder`` and return Detectron2 dataset dicts (bbox_mode 1 = XYWH_ABS)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    records = []
    for k in range(num_images):
        image, masks = make_image(rng, *size)
        path = os.path.join(folder, f"synthetic_{k}.png")
        Image.fromarray(image).save(path)
        records.append(to_record(path, k, image, masks))
    return records
