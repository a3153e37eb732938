"""Turn one Kaggle image folder into a saved PNG and COCO instance annotations."""
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from ..utils.json_io import atomic_write
from .segmentation import encode_mask

__all__ = [
    "BadImage",
    "ConvertedImage",
    "convert_image",
    "decode_png",
    "grey_or_colour",
    "mask_annotation",
    "to_saved_image",
]


class BadImage(Exception):
    """An image folder that cannot be used; the message is the reason."""


@dataclass
class ConvertedImage:
    pixels: np.ndarray  # HxW uint8 (grey) or HxWx3 uint8 (colour), ready to save
    modality: str  # "grey" or "colour"
    masks: list = field(default_factory=list)  # [(mask file name, HxW bool array)]
    skipped_masks: list = field(default_factory=list)  # [(mask file name, reason)]


def decode_png(data, what):
    """Fully decode PNG bytes (a truncated file fails here, not later)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # PIL raises several types for corrupt data
        raise BadImage(f"unreadable {what} PNG ({type(e).__name__}: {e})") from None
    return image


def to_saved_image(image):
    """Drop alpha; grey images (R == G == B) become one channel."""
    if image.mode in ("I", "I;16", "F"):
        raise BadImage(f"unsupported image mode {image.mode} (expected 8-bit grey or RGB(A))")
    if image.mode in ("L", "LA"):
        return np.asarray(image.convert("L")), "grey"
    return grey_or_colour(np.asarray(image.convert("RGB")))


def grey_or_colour(rgb):
    """(pixels to save, modality) of an H x W x 3 image: one channel and "grey" when its three
    channels are equal (fluorescence), else the RGB image and "colour" (brightfield, H&E)."""
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0]), "grey"
    return rgb, "colour"


def _decode_mask(data, name, shape):
    mask = decode_png(data, f"mask {name}")
    if (mask.height, mask.width) != shape:
        raise BadImage(f"mask {name} is {mask.height}x{mask.width}, its image is {shape[0]}x{shape[1]}")
    array = np.asarray(mask if mask.mode in ("L", "1", "P", "I", "I;16") else mask.convert("L"))
    return array > 0


def convert_image(image_bytes, masks):
    """Decode one image and its masks, given as ``[(file name, bytes)]``.

    Raises BadImage when the image cannot be used; an all-zero mask is only
    left out and noted in ``skipped_masks``.
    """
    pixels, modality = to_saved_image(decode_png(image_bytes, "image"))
    converted = ConvertedImage(pixels, modality)
    if not masks:
        raise BadImage("no masks (empty masks/ folder)")
    for name, data in masks:
        mask = _decode_mask(data, name, pixels.shape[:2])
        if mask.any():
            converted.masks.append((name, mask))
        else:
            converted.skipped_masks.append((name, "all-zero mask"))
    if not converted.masks:
        raise BadImage("no non-empty masks")
    return converted


NUCLEUS_CATEGORIES = [{"id": 1, "name": "nucleus", "supercategory": "nucleus"}]


def write_coco_instances(path, info, images, annotations):
    """One split's COCO instances file, written atomically, with the single "nucleus" category."""
    with atomic_write(path, encoding="utf-8") as f:
        json.dump({"info": info, "images": images, "annotations": annotations, "categories": NUCLEUS_CATEGORIES}, f)


def mask_annotation(mask, annotation_id, image_id, shape=None, offset=(0, 0)):
    """COCO annotation of one bool mask: compressed RLE with ``counts`` as str (JSON-ready).
    ``mask`` may be a crop placed at ``offset`` (row, column) in an image of ``shape``."""
    rle = encode_mask(mask, shape, offset)
    bbox = mask_util.toBbox(rle)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": rle,
        "area": int(mask.sum()),
        "bbox": [float(v) for v in bbox],
        "iscrowd": 0,
    }
