"""Tiled prediction: overlapping fixed-size tiles, and each nucleus taken from one tile where
it is whole (the idea of StarDist's ``predict_instances_big``, written anew).

Tiles of at most ``tile_size`` pixels start at evenly spread positions so that the
last one ends at the image's edge and neighbours share at least ``overlap`` pixels;
an image side no longer than a tile is one tile, and a longer one is cut into as few
tiles as ``tile_size`` needs, each as short as that allows (fitted_tile_size). The shared strip between two
neighbours is split at its middle: that gives each tile a *core*, and the cores
partition the image. A detection is taken from tile t when

* the centre of its mask's bounding box lies in t's core, widened by a small
  margin (``overlap / 4``), and
* it is whole in t: its mask does not touch a side of t inside the image.

A nucleus smaller than the overlap whose centre lies in t's core is always whole
in t (its centre is at least half the overlap away from t's inner sides). A real
model predicts a nucleus near a core's edge a little differently in the two
tiles that see it, so its centre may land in both widened cores (or, without
the margin, in neither): of detections from different tiles that cover each
other by half or more, only the highest-scoring one is kept. So each nucleus is
taken once, with the mask one tile predicts; a cut piece of it seen by a
neighbour touches that neighbour's side and is never taken. A nucleus at least as
large as the overlap may be whole in no tile or in a tile other than its core's;
those few are kept aside and added at the end unless a nucleus already taken
covers half of them: first whole ones, then cut ones (the best there is).

Memory: one tile's input and predictions at a time, plus the kept detections
(small boolean crops): it grows with the tile size and the number of nuclei,
not with the image's area.
"""
import math
import sys
from dataclasses import dataclass, replace
from typing import Callable, List, Sequence

import numpy as np
from tqdm import tqdm

__all__ = ["PROGRESS_MIN_TILES", "Tile", "fitted_tile_size", "predict_tiled", "tile_grid", "tile_starts"]

# Show a progress bar over tiles only for images with at least this many tiles.
PROGRESS_MIN_TILES = 4
# A large nucleus kept aside is dropped when a taken nucleus covers this share of it.
_DUPLICATE_COVER = 0.5


def tile_starts(length: int, tile_size: int, overlap: int) -> List[int]:
    """Start positions of tiles of ``tile_size`` covering ``length`` pixels, evenly spread,
    the last ending at ``length``, neighbours sharing at least ``overlap`` pixels."""
    if tile_size <= overlap:
        raise ValueError(f"tile size {tile_size} must be larger than the overlap {overlap}")
    if length <= tile_size:
        return [0]
    count = max(2, math.ceil((length - overlap) / (tile_size - overlap)))
    while True:
        starts = [int(math.floor(k * (length - tile_size) / (count - 1))) for k in range(count)]
        if all(b - a <= tile_size - overlap for a, b in zip(starts, starts[1:])):
            return starts
        count += 1


@dataclass(frozen=True)
class Tile:
    """Rows y0:y1, columns x0:x1 of the image; its core is [core_y0, core_y1) x [core_x0, core_x1)."""

    y0: int
    y1: int
    x0: int
    x1: int
    core_y0: float
    core_y1: float
    core_x0: float
    core_x1: float


def fitted_tile_size(length: int, tile_size: int, overlap: int) -> int:
    """The shortest tile side, at most ``tile_size``, that covers ``length`` pixels in as few
    tiles as ``tile_size`` would: a 696-px side takes two 388-px tiles, not two 512-px ones
    that are half overlap (the network's cost follows the tiles' area)."""
    if length <= tile_size:
        return length
    count = len(tile_starts(length, tile_size, overlap))
    return min(tile_size, math.ceil((length + (count - 1) * overlap) / count))


def _spans_and_cores(length, tile_size, overlap):
    if length > tile_size:
        tile_size = fitted_tile_size(length, tile_size, overlap)
    starts = tile_starts(length, tile_size, overlap)
    ends = [min(s + tile_size, length) for s in starts]
    cuts = [(ends[k] + starts[k + 1]) / 2.0 for k in range(len(starts) - 1)]
    lows, highs = [-math.inf] + cuts, cuts + [math.inf]
    return list(zip(starts, ends, lows, highs))


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> List[Tile]:
    """The tiles of an image, row by row."""
    rows = _spans_and_cores(height, tile_size, overlap)
    cols = _spans_and_cores(width, tile_size, overlap)
    return [Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1) for y0, y1, cy0, cy1 in rows for x0, x1, cx0, cx1 in cols]


def _shifted(detection, dy: int, dx: int):
    """The detection (predictor.Detection, its mask a CroppedMask) moved by (dy, dx)."""
    x0, y0, x1, y1 = detection.box
    mask = detection.mask
    return replace(
        detection,
        box=(x0 + dx, y0 + dy, x1 + dx, y1 + dy),
        mask=type(mask)(mask.y0 + dy, mask.x0 + dx, mask.bits),
    )


def _in_core(mask, tile: Tile, margin: float = 0.0) -> bool:
    cy, cx = (mask.y0 + mask.y1) / 2.0, (mask.x0 + mask.x1) / 2.0
    return (tile.core_y0 - margin <= cy < tile.core_y1 + margin
            and tile.core_x0 - margin <= cx < tile.core_x1 + margin)


def _is_whole(mask, tile: Tile, height: int, width: int) -> bool:
    """False when the mask touches a side of the tile that is not the image's border."""
    return not (
        (mask.y0 <= tile.y0 and tile.y0 > 0)
        or (mask.x0 <= tile.x0 and tile.x0 > 0)
        or (mask.y1 >= tile.y1 and tile.y1 < height)
        or (mask.x1 >= tile.x1 and tile.x1 < width)
    )


def _covered_share(mask, others: Sequence) -> float:
    """Largest share of ``mask``'s pixels covered by one of ``others``."""
    area = mask.area
    best = 0.0
    for other in others:
        y0, y1 = max(mask.y0, other.y0), min(mask.y1, other.y1)
        x0, x1 = max(mask.x0, other.x0), min(mask.x1, other.x1)
        if y0 >= y1 or x0 >= x1 or area == 0:
            continue
        a = mask.bits[y0 - mask.y0 : y1 - mask.y0, x0 - mask.x0 : x1 - mask.x0]
        b = other.bits[y0 - other.y0 : y1 - other.y0, x0 - other.x0 : x1 - other.x0]
        best = max(best, np.count_nonzero(a & b) / area)
    return best


def predict_tiled(
    image: np.ndarray,
    predict_tile: Callable[[np.ndarray], list],
    tile_size: int,
    overlap: int,
    progress: bool = False,
    description: str = "tiles",
) -> list:
    """Detections (predictor.Detection) of ``image`` (H x W [x C]) predicted tile by tile and stitched.

    ``predict_tile(tile_image)`` returns detections in the tile's own coordinates.
    The result is in image coordinates, sorted by decreasing score.
    """
    height, width = image.shape[:2]
    tiles = tile_grid(height, width, tile_size, overlap)
    kept, whole_spares, cut_spares = [], [], []
    bar = tqdm(
        tiles, desc=description, unit="tile", leave=False, file=sys.stderr,
        disable=not progress or len(tiles) < PROGRESS_MIN_TILES,
    )
    margin = overlap / 4.0
    candidates = []  # (detection, tile index)
    for index, tile in enumerate(bar):
        for detection in predict_tile(image[tile.y0 : tile.y1, tile.x0 : tile.x1]):
            detection = _shifted(detection, tile.y0, tile.x0)
            mask = detection.mask
            if mask.area == 0:
                continue
            whole = _is_whole(mask, tile, height, width)
            if whole and _in_core(mask, tile, margin):
                candidates.append((detection, index))
            elif max(mask.bits.shape) >= overlap:  # large: maybe whole in no tile, or not in its core's
                if whole:
                    whole_spares.append(detection)
                elif _in_core(mask, tile):
                    cut_spares.append(detection)
    # Highest score first; a detection covered by half by one kept from another tile is the
    # same nucleus seen twice. (Overlaps within one tile are the model's own, as untiled.)
    candidates.sort(key=lambda c: -c[0].score)
    # A spare gets an index of its own (negative), so it is compared with every kept detection.
    spares = [(d, -1 - k) for k, d in enumerate(whole_spares + cut_spares)]
    boxes = np.empty((len(candidates) + len(spares), 4), dtype=np.int64)  # y0, y1, x0, x1 of kept
    tiles_of = np.empty(len(boxes), dtype=np.int64)
    for detection, index in candidates + spares:
        m = detection.mask
        n = len(kept)
        near = np.flatnonzero(
            (boxes[:n, 0] < m.y1) & (boxes[:n, 1] > m.y0) & (boxes[:n, 2] < m.x1) & (boxes[:n, 3] > m.x0)
            & (tiles_of[:n] != index)
        )
        if _covered_share(m, [kept[i].mask for i in near]) < _DUPLICATE_COVER:
            boxes[n], tiles_of[n] = (m.y0, m.y1, m.x0, m.x1), index
            kept.append(detection)
    kept.sort(key=lambda d: -d.score)
    return kept
