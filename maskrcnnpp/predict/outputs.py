"""What prediction writes: the label image, the overlay and the COCO results JSON.

* Label images: 16-bit, 0 background, 1..N nuclei, the format CellProfiler,
  napari and StarDist read. Overlaps are resolved as the DSB2018 metric does
  (``resolve_overlaps``): each pixel goes to the highest-scoring nucleus
  covering it. A detection left with no pixel (empty mask, or covered entirely
  by higher-scoring ones) is dropped, and the rest are numbered 1..N without
  gaps in the order given (decreasing score), so label k is the k-th kept
  detection.
* Overlays: each nucleus outlined and filled in its own colour with
  Detectron2's Visualizer, drawn from its region in the label image (so the
  overlay shows exactly what the label image holds), as polygons traced within
  the nucleus' own rectangle: no full-size mask per nucleus is made, and images
  larger than a tile are drawn tile by tile, so memory stays bounded however
  large the image. (``Visualizer.draw_binary_mask`` is not used because for a
  mask with a hole it blends a full-size float RGBA image per nucleus, which
  matplotlib keeps until the figure is rendered.)
* One COCO-format results file for a whole batch, streamed as images are
  processed. Each record is what ``COCO.loadRes`` expects (image_id,
  category_id, RLE segmentation, XYWH bbox, score) plus ``file_name`` (the
  input image) and ``label`` (the nucleus' value in that image's label image).
  The segmentation is the detection's own mask, before overlaps are resolved,
  as Detectron2's COCOEvaluator would record it.
"""
import json

import cv2
import numpy as np
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image


__all__ = [
    "FILL_ALPHA",
    "MAX_LABEL",
    "RESULTS_FILE_NAME",
    "TILE_SIZE",
    "CocoResultsWriter",
    "build_label_image",
    "coco_records",
    "draw_overlay",
    "read_label_image",
    "region_polygons",
    "write_label_image",
]

MAX_LABEL = np.iinfo(np.uint16).max


def build_label_image(detections, shape):
    """(H x W label image, indices of the detections it keeps, in label order).

    Each pixel goes to the highest-scoring detection covering it (equal scores: the
    earlier one), as ``resolve_overlaps`` decides; detections left with no pixel are
    dropped and the rest numbered 1..N in the given order. Painted crop by crop, lowest
    score first, so no full-size mask per nucleus is made. uint16 when N <= 65,535,
    else int32 (which a 16-bit PNG cannot hold).
    """
    height, width = shape
    scores = np.array([d.score for d in detections], dtype=np.float64)
    raw = np.zeros((height, width), dtype=np.int32)  # detection i -> i + 1
    for i in np.lexsort((-np.arange(len(detections)), scores)):  # lowest score first
        mask = detections[i].mask
        window = raw[mask.y0 : mask.y1, mask.x0 : mask.x1]
        window[mask.bits] = i + 1
    owned = np.bincount(raw.ravel(), minlength=len(detections) + 1)[1:]
    kept = np.flatnonzero(owned)
    dtype = np.uint16 if len(kept) <= MAX_LABEL else np.int32
    relabel = np.zeros(len(detections) + 1, dtype=dtype)
    relabel[kept + 1] = np.arange(1, len(kept) + 1, dtype=dtype)
    return relabel[raw], kept.tolist()


def write_label_image(labels, path):
    """Save as a 16-bit greyscale PNG (Pillow mode I;16)."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint16:
        if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
            raise ValueError("labels must lie in 0..65535")
        labels = labels.astype(np.uint16)
    Image.fromarray(labels).save(path, format="PNG")


def read_label_image(path):
    """A label image written by :func:`write_label_image` (or any 8/16-bit one) as uint16."""
    with Image.open(path) as image:
        labels = np.array(image)
    if labels.ndim != 2:
        raise ValueError(f"{path}: a label image has one channel, this one has shape {labels.shape}")
    return labels.astype(np.uint16)


FILL_ALPHA = 0.35
# Matplotlib renders through float RGBA buffers (~120 bytes per pixel: ~480 MiB for a
# 2048 x 2048 image at once, ~60 MiB in 512 x 512 tiles).
TILE_SIZE = 512
_PALETTE = colormap(rgb=True, maximum=1)


def draw_overlay(image_rgb, labels, crops, tile_size=TILE_SIZE):
    """The overlay as H x W x 3 uint8 RGB and the number of nuclei drawn.

    ``labels`` is the label image; ``crops[k - 1]`` is a CroppedMask whose
    rectangle contains every pixel of label k (the detection's own mask).
    """
    nuclei = []  # (x0, y0, x1, y1, colour, outer polygons, hole polygons)
    for k, crop in enumerate(crops, start=1):
        region = labels[crop.y0 : crop.y1, crop.x0 : crop.x1] == k
        outer, holes = region_polygons(region, offset=(crop.x0, crop.y0))
        if outer:
            colour = _PALETTE[(k - 1) % len(_PALETTE)]
            nuclei.append((crop.x0, crop.y0, crop.x1, crop.y1, colour, outer, holes))
    height, width = labels.shape
    overlay = np.empty_like(image_rgb)
    for ty in range(0, height, tile_size):
        for tx in range(0, width, tile_size):
            tile = (slice(ty, ty + tile_size), slice(tx, tx + tile_size))
            overlay[tile] = _draw_tile(image_rgb[tile], tx, ty, nuclei)
    return overlay, len(nuclei)


def _draw_tile(image_rgb, tx, ty, nuclei):
    height, width = image_rgb.shape[:2]
    visualizer = Visualizer(image_rgb, metadata=None, scale=1.0)
    for x0, y0, x1, y1, colour, outer, holes in nuclei:
        # Polygons are traced on pixel centres, so their strokes stay within a pixel of the crop.
        if x1 + 1 < tx or y1 + 1 < ty or x0 - 1 > tx + width or y0 - 1 > ty + height:
            continue
        for polygon in outer:
            visualizer.draw_polygon(polygon - (tx, ty), colour, alpha=FILL_ALPHA)
        for polygon in holes:  # outline only; the hole's pixels belong to another nucleus
            visualizer.draw_polygon(polygon - (tx, ty), colour, alpha=0.0)
    return visualizer.output.get_image()


def region_polygons(region, offset=(0, 0)):
    """Outer contours and hole contours of a boolean region, as N x 2 (x, y) float arrays.

    Vertices are pixel centres (+0.5), Visualizer's convention. A region too thin
    to give a polygon (1 or 2 contour points) becomes its bounding rectangle, so
    every nucleus is drawn.
    """
    contours, hierarchy = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    outer, holes = [], []
    if hierarchy is None:
        return outer, holes
    dx, dy = offset
    for contour, (_next, _prev, _child, parent) in zip(contours, hierarchy[0]):
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0) + 1
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
        else:
            points += 0.5
        points += (dx, dy)
        (outer if parent < 0 else holes).append(points)
    return outer, holes


RESULTS_FILE_NAME = "coco_instances_results.json"


def coco_records(detections, image_id, file_name, shape):
    """Records of one image's kept detections; ``detections[k - 1]`` has label k."""
    records = []
    for label, det in enumerate(detections, start=1):
        x0, y0, x1, y1 = det.box
        records.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": det.category_id,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "score": round(det.score, 5),
                "segmentation": det.mask.to_rle(shape),
                "label": label,
            }
        )
    return records


class CocoResultsWriter:
    """Streams records as one JSON list into ``file`` (opened by the caller with
    ``atomic_write``, so a crash never leaves a truncated JSON under the final name)."""

    def __init__(self, file):
        self._file = file
        self._file.write("[")
        self.count = 0

    def add(self, records):
        for record in records:
            self._file.write(",\n" if self.count else "\n")
            self._file.write(json.dumps(record))
            self.count += 1

    def finish(self):
        self._file.write("\n]\n")
        return self.count
