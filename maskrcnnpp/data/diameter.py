"""Nucleus diameters: the equivalent diameter of a mask's area, and per-image medians.

A nucleus' diameter is the *equivalent diameter* of its mask: the diameter of the
disk with the same area, ``sqrt(4 * area / pi)``. An image's diameter is the
median over its nuclei; an image with no nucleus takes the dataset's median (the
median of the per-image medians).
"""
import math
from typing import Iterable, Optional

import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "annotation_area",
    "equivalent_diameter",
    "fill_missing_diameters",
    "median_diameter",
    "median_diameter_of_record",
]


def equivalent_diameter(area):
    """Diameter of the disk of area ``area`` (a number or an array of areas)."""
    return np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / math.pi)


def median_diameter(areas: Iterable[float]) -> Optional[float]:
    """Median equivalent diameter of masks of the given areas; None when there is none > 0."""
    areas = np.asarray([a for a in areas if a and a > 0], dtype=np.float64)
    if areas.size == 0:
        return None
    return float(np.median(equivalent_diameter(areas)))


def annotation_area(annotation, height, width):
    """Pixel area of a Detectron2/COCO annotation's segmentation (RLE or polygons)."""
    if "area" in annotation:
        return float(annotation["area"])
    segmentation = annotation.get("segmentation")
    if segmentation is None:
        x, y, w, h = annotation["bbox"][:4]  # no mask: the box' inscribed ellipse
        return math.pi * w * h / 4.0
    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle.get("counts"), list):
            rle = mask_util.frPyObjects(rle, *rle["size"])
    else:
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    return float(mask_util.area(rle))


def median_diameter_of_record(record) -> Optional[float]:
    """The record's ``median_diameter`` if set (by dataset registration), else measured
    from its non-crowd annotations; None when it has no nucleus."""
    if record.get("median_diameter") is not None:
        return float(record["median_diameter"])
    height, width = record.get("height"), record.get("width")
    return median_diameter(
        annotation_area(a, height, width) for a in record.get("annotations", []) if not a.get("iscrowd", 0)
    )


def fill_missing_diameters(records):
    """Set each record's ``median_diameter`` (in place): its own, or the dataset median
    for an image with no nucleus. Returns the dataset median (None for no nucleus at all)."""
    own = [median_diameter_of_record(r) for r in records]
    measured = [d for d in own if d is not None]
    dataset_median = float(np.median(measured)) if measured else None
    for record, diameter in zip(records, own):
        record["median_diameter"] = diameter if diameter is not None else dataset_median
    return dataset_median
