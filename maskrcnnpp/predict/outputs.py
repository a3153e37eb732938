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
  overlay shows exactly what the label image holds), as the pixel-edge polygons
  the ROI and GeoJSON outputs write, traced within the nucleus' own rectangle:
  no full-size mask per nucleus is made, and images
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
* For Fiji/ImageJ and QuPath: per image an ImageJ ROI set (``.zip``, one ROI
  per nucleus) and a GeoJSON FeatureCollection (one feature per nucleus, its
  score as a measurement), both from the nucleus' region in the label image.
  Their polygons trace the pixel edges (vertices on pixel corners, as ImageJ's
  wand and QuPath's own tracing do), so filling a polygon gives back exactly
  its pixels, however small the nucleus. A nucleus in several pieces becomes a
  multi-polygon (ImageJ: a composite ROI), and holes are kept; holes run
  against their outer ring, so even-odd and non-zero filling agree.
"""
import json
import os
import zipfile

import numpy as np
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..evaluation.nuclei_metrics import resolve_overlaps
from ..utils.json_io import atomic_write


__all__ = [
    "FILL_ALPHA",
    "MAX_LABEL",
    "RESULTS_FILE_NAME",
    "TILE_SIZE",
    "CocoResultsWriter",
    "build_label_image",
    "coco_records",
    "draw_overlay",
    "edge_polygons",
    "nucleus_polygons",
    "qupath_feature",
    "read_label_image",
    "write_imagej_rois",
    "write_label_image",
    "write_qupath_geojson",
]

MAX_LABEL = np.iinfo(np.uint16).max


def build_label_image(detections, shape):
    """(H x W label image, indices of the detections it keeps, in label order).

    Each pixel goes to the highest-scoring detection covering it (equal scores: the
    earlier one), as ``resolve_overlaps`` decides, painted crop by crop; detections left
    with no pixel are dropped and the rest numbered 1..N in the given order. uint16 when
    N <= 65,535, else int32 (which a 16-bit PNG cannot hold).
    """
    raw = resolve_overlaps([d.mask for d in detections], [d.score for d in detections], shape)
    owned = np.bincount(raw.ravel(), minlength=len(detections) + 1)[1:]
    kept = np.flatnonzero(owned)
    dtype = np.uint16 if len(kept) <= MAX_LABEL else np.int32
    relabel = np.zeros(len(detections) + 1, dtype=dtype)
    relabel[kept + 1] = np.arange(1, len(kept) + 1, dtype=dtype)
    return relabel[raw], kept.tolist()


def write_label_image(labels, path):
    """Save atomically as a 16-bit greyscale PNG (Pillow mode I;16) at ``path``; labels past
    65,535 go to a 32-bit TIFF of the same name with a .tif suffix. Returns the path written."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be 0 (background) or positive")
    if labels.size and labels.max() > MAX_LABEL:
        path, labels, file_format = os.path.splitext(str(path))[0] + ".tif", labels.astype(np.int32), "TIFF"
    else:
        labels, file_format = labels.astype(np.uint16, copy=False), "PNG"
    with atomic_write(str(path), "wb") as f:
        Image.fromarray(labels).save(f, format=file_format)
    return str(path)


def read_label_image(path):
    """A label image written by :func:`write_label_image` (or any 8/16/32-bit one): uint16, or
    the file's own 32-bit type for a TIFF with more than 65,535 labels (never wrapped)."""
    with Image.open(path) as image:
        labels = np.array(image)
    if labels.ndim != 2:
        raise ValueError(f"{path}: a label image has one channel, this one has shape {labels.shape}")
    return labels if labels.dtype.itemsize > 2 else labels.astype(np.uint16)


FILL_ALPHA = 0.35
# Matplotlib renders through float RGBA buffers (~120 bytes per pixel: ~480 MiB for a
# 2048 x 2048 image at once, ~60 MiB in 512 x 512 tiles).
TILE_SIZE = 512
_PALETTE = colormap(rgb=True, maximum=1)


def draw_overlay(image_rgb, labels, crops, tile_size=TILE_SIZE, polygons_of=None):
    """The overlay as H x W x 3 uint8 RGB and the number of nuclei drawn.

    ``labels`` is the label image; ``crops[k - 1]`` is a CroppedMask whose
    rectangle contains every pixel of label k (the detection's own mask). Each
    nucleus is drawn from the polygons the ROI and GeoJSON outputs write:
    ``polygons_of``, when ``nucleus_polygons(labels, crops)`` has already traced them.
    """
    if polygons_of is None:
        polygons_of = nucleus_polygons(labels, crops)
    nuclei = []  # (x0, y0, x1, y1, colour, polygons)
    for k, polygons in polygons_of:
        crop = crops[k - 1]
        nuclei.append((crop.x0, crop.y0, crop.x1, crop.y1, _PALETTE[(k - 1) % len(_PALETTE)], polygons))
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
    for x0, y0, x1, y1, colour, polygons in nuclei:
        # Polygons run on pixel corners inside the crop, so their strokes stay within a pixel of it.
        if x1 + 1 < tx or y1 + 1 < ty or x0 - 1 > tx + width or y0 - 1 > ty + height:
            continue
        for outer, *holes in polygons:
            visualizer.draw_polygon(outer - (tx, ty), colour, alpha=FILL_ALPHA)
            for hole in holes:  # outline only; the hole's pixels belong to another nucleus
                visualizer.draw_polygon(hole - (tx, ty), colour, alpha=0.0)
    return visualizer.output.get_image()


def edge_polygons(region, offset=(0, 0)):
    """The boundary of a boolean region along pixel edges, as polygons ``[outer, hole, ...]``.

    Each ring is an N x 2 int64 array of (x, y) pixel corners (pixel (r, c) is the square
    [c, c + 1] x [r, r + 1]), not closed, with no collinear vertex; outer rings run clockwise
    on screen (positive shoelace area with y down), holes the other way. Pieces touching only
    at a corner are separate polygons (4-connectivity). ``offset`` = (x, y) is added.
    """
    region = np.asarray(region, dtype=bool)
    padded = np.pad(region, 1)
    inside = padded[1:-1, 1:-1]
    # Exposed edges of each pixel, directed so that the region is on the right (y down).
    starts, steps = [], []
    for neighbour, corner, step in (
        (padded[:-2, 1:-1], (0, 0), (1, 0)),  # top edge, going right
        (padded[1:-1, 2:], (1, 0), (0, 1)),  # right edge, going down
        (padded[2:, 1:-1], (1, 1), (-1, 0)),  # bottom edge, going left
        (padded[1:-1, :-2], (0, 1), (0, -1)),  # left edge, going up
    ):
        rows, cols = np.nonzero(inside & ~neighbour)
        starts.append(np.stack([cols + corner[0], rows + corner[1]], axis=1))
        steps.append(np.broadcast_to(step, (len(rows), 2)))
    if not sum(len(a) for a in starts):
        return []
    starts, steps = np.concatenate(starts), np.concatenate(steps)
    leaving = {}  # corner -> indices of the edges starting there (1, or 2 where pieces touch diagonally)
    for i, (x, y) in enumerate(starts.tolist()):
        leaving.setdefault((x, y), []).append(i)
    step_list = [tuple(v) for v in steps.tolist()]
    used = np.zeros(len(starts), dtype=bool)
    outers, holes = [], []
    for first in range(len(starts)):
        if used[first]:
            continue
        ring, edge = [], first
        while True:
            used[edge] = True
            ring.append(edge)
            dx, dy = step_list[edge]
            x, y = starts[edge]
            candidates = leaving[(int(x + dx), int(y + dy))]
            # Where two edges leave a corner, turn right: stay on the same 4-connected piece.
            edge = candidates[0] if len(candidates) == 1 else next(
                c for c in candidates if step_list[c] == (-dy, dx)
            )
            if edge == first:
                break
        ring = np.asarray(ring)
        turns = np.any(steps[ring] != steps[np.roll(ring, 1)], axis=1)  # a vertex where the direction changes
        points = starts[ring[turns]] + np.asarray(offset, dtype=np.int64)
        (outers if _shoelace(points) > 0 else holes).append(points)
    return _nest(outers, holes)


def _shoelace(points):
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _contains(ring, x, y):
    """Whether point (x, y) (a pixel centre: never on an edge) lies inside ``ring`` (even-odd)."""
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1)
    return bool(np.count_nonzero(crosses & (at > x)) % 2)


def _nest(outers, holes):
    """Polygons ``[outer, holes...]``: each hole goes to the smallest outer ring around it."""
    polygons = [[outer] for outer in outers]
    if not holes:
        return polygons
    areas = [_shoelace(outer) for outer in outers]
    lows = np.array([outer.min(axis=0) for outer in outers])
    highs = np.array([outer.max(axis=0) for outer in outers])
    for hole in holes:
        # The pixel on the region side of the hole's first edge (left of it: holes run the other way).
        (x, y), (nx, ny) = hole[0], hole[1]
        dx, dy = np.sign(nx - x), np.sign(ny - y)
        px, py = x + 0.5 * dx - 0.5 * dy, y + 0.5 * dy + 0.5 * dx
        # Only rings whose bounding box holds the point can hold it (many pieces: few candidates).
        boxed = np.flatnonzero((lows[:, 0] < px) & (px < highs[:, 0]) & (lows[:, 1] < py) & (py < highs[:, 1]))
        around = [i for i in boxed.tolist() if _contains(outers[i], px, py)]
        if around:
            polygons[min(around, key=areas.__getitem__)].append(hole)
    return polygons


def nucleus_polygons(labels, crops):
    """``[(label k, polygons)]`` for the nuclei of a label image; ``crops[k - 1]`` is a CroppedMask
    whose rectangle holds every pixel of label k. Traced within that rectangle (memory-lean)."""
    result = []
    for k, crop in enumerate(crops, start=1):
        region = labels[crop.y0 : crop.y1, crop.x0 : crop.x1] == k
        polygons = edge_polygons(region, offset=(crop.x0, crop.y0))
        if polygons:
            result.append((k, polygons))
    return result


def _imagej_roi(name, polygons):
    import roifile  # only when ImageJ output is asked for

    rings = [ring for polygon in polygons for ring in polygon]
    if len(rings) == 1:
        roi = roifile.ImagejRoi.frompoints(rings[0], name=name)
        roi.roitype = roifile.ROI_TYPE.TRACED  # what ImageJ's wand makes: a polygon on pixel edges
    else:  # pieces or holes: a composite (ShapeRoi) path of MOVETO / LINETO / CLOSE, even-odd filled
        roi = roifile.ImagejRoi()
        roi.roitype = roifile.ROI_TYPE.RECT
        roi.name = name
        path = []
        for ring in rings:
            path += [0, *ring[0]]
            for x, y in ring[1:]:
                path += [1, x, y]
            path.append(4)
        roi.multi_coordinates = np.asarray(path, dtype=np.float32)
        roi.shape_roi_size = len(path)
    corners = np.concatenate(rings)
    roi.left, roi.top = (int(v) for v in corners.min(axis=0))
    roi.right, roi.bottom = (int(v) for v in corners.max(axis=0))
    return roi


def write_imagej_rois(path, nuclei):
    """An ImageJ/Fiji ROI set (``.zip``, opened by the ROI Manager): one ROI per nucleus of
    ``nuclei`` = ``[(label, polygons)]``, named ``nucleus-<label>``. Written atomically."""
    rois = [_imagej_roi(f"nucleus-{k:04d}", polygons) for k, polygons in nuclei]
    # The ROI Manager's format: a plain zip of <name>.roi files (no nucleus: an empty, valid zip).
    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w") as archive:
        for roi in rois:
            archive.writestr(f"{roi.name}.roi", roi.tobytes())


def _ring(points):
    closed = np.concatenate([points, points[:1]])
    return closed.tolist()


def qupath_feature(label, polygons, score):
    """One GeoJSON Feature (QuPath detection object) of a nucleus: Polygon or MultiPolygon."""
    rings = [[_ring(ring) for ring in polygon] for polygon in polygons]
    geometry = (
        {"type": "Polygon", "coordinates": rings[0]}
        if len(rings) == 1
        else {"type": "MultiPolygon", "coordinates": rings}
    )
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {
            "objectType": "detection",
            "name": f"nucleus-{label:04d}",
            "classification": {"name": "Nucleus"},
            "measurements": {"score": round(float(score), 5), "label": int(label)},
        },
    }


def write_qupath_geojson(path, nuclei, scores):
    """A GeoJSON FeatureCollection (QuPath: File > Import objects, or drag and drop): one feature
    per nucleus of ``nuclei`` = ``[(label, polygons)]``; ``scores[label - 1]`` its score."""
    features = [qupath_feature(k, polygons, scores[k - 1]) for k, polygons in nuclei]
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)


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
