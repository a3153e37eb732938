"""Small synthetic nuclei images (bright ellipses on a noisy background), for tests and benchmarks."""
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from .segmentation import encode_mask

__all__ = ["ellipse_mask", "make_image", "to_record", "make_dataset"]


def ellipse_mask(height, width, cy, cx, ry, rx):
    yy, xx = np.ogrid[:height, :width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


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
