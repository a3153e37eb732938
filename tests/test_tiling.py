"""Tiled prediction and stitching (issue 13) with a deterministic stub predictor."""
import cv2
import numpy as np
import pytest

from maskrcnnpp.predict.predictor import CroppedMask, Detection
from maskrcnnpp.predict.tiling import fitted_tile_size, predict_tiled, tile_grid, tile_starts
from maskrcnnpp.data import synthetic
from maskrcnnpp.data.synthetic import ellipse_mask

TILE, OVERLAP = 128, 32


def stub_predict(image):
    """Every bright connected component is a nucleus; its score depends only on its pixels."""
    bright = (image[..., 0] > 100).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    detections = []
    for k in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[k])
        bits = labels[y : y + h, x : x + w] == k
        score = 0.3 + 0.7 * ((area * 7919 + w * 31 + h) % 1000) / 1000.0
        box = (float(x), float(y), float(x + w), float(y + h))
        detections.append(Detection(box, score, 1, CroppedMask(y, x, bits)))
    return sorted(detections, key=lambda d: -d.score)


def disks(size, diameters, seed):
    """Bright disks on a dark image, none touching another (8-connectivity), some cut by the
    border; their masks as CroppedMasks (windows around each disk)."""
    image, placed = synthetic.disks(size, diameters, seed, gap=1, margin=None, tries=200)
    return image, [CroppedMask(y0, x0, window) for y0, x0, window in placed]


def as_set(detections):
    return {(d.mask.y0, d.mask.x0, d.mask.bits.shape, d.mask.bits.tobytes(), round(d.score, 9)) for d in detections}


def straddling(masks, height, width):
    """Masks crossing a side of some tile inside the image."""
    edges_y = {e for t in tile_grid(height, width, TILE, OVERLAP) for e in (t.y0, t.y1) if 0 < e < height}
    edges_x = {e for t in tile_grid(height, width, TILE, OVERLAP) for e in (t.x0, t.x1) if 0 < e < width}
    count = 0
    for m in masks:
        rows, cols = m.y0 + np.flatnonzero(m.bits.any(1)), m.x0 + np.flatnonzero(m.bits.any(0))
        if any(rows[0] < e <= rows[-1] for e in edges_y) or any(cols[0] < e <= cols[-1] for e in edges_x):
            count += 1
    return count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_nucleus_once_with_the_untiled_mask(seed):
    rng = np.random.default_rng(100 + seed)
    image, masks = disks((300, 361), rng.uniform(6, OVERLAP - 2, size=120), seed)
    assert straddling(masks, 300, 361) >= 10  # the test means something
    untiled = stub_predict(image)
    tiled = predict_tiled(image, stub_predict, TILE, OVERLAP)
    assert len(untiled) == len(masks)
    assert len(tiled) == len(masks)
    assert as_set(tiled) == as_set(untiled)
    tight = {(c.y0, c.x0, c.bits.tobytes()) for c in (CroppedMask.from_full(m.full((300, 361))) for m in masks)}
    assert {(d.mask.y0, d.mask.x0, d.mask.bits.tobytes()) for d in tiled} == tight  # each disk, whole
    assert [d.score for d in tiled] == sorted((d.score for d in tiled), reverse=True)
    boxes = {tuple(d.box) for d in tiled}
    assert boxes == {tuple(d.box) for d in untiled}


def test_nucleus_larger_than_the_overlap_is_taken_once():
    height, width = 200, 300
    image = np.full((height, width, 3), 20, np.uint8)
    tiles = tile_grid(height, width, TILE, OVERLAP)
    boundary = tiles[0].core_x1  # between the first two tile columns
    big = ellipse_mask(height, width, 100, boundary - 1, 30, 30)  # 60 px, larger than the overlap
    image[big] = 200
    cols = np.flatnonzero(big.any(0))
    assert not any(t.x0 <= cols[0] and cols[-1] < t.x1 for t in tiles)  # whole in no tile
    tiled = predict_tiled(image, stub_predict, TILE, OVERLAP)
    assert len(tiled) == 1
    assert tiled[0].mask.area >= big.sum() / 2


def test_image_smaller_than_a_tile_is_one_tile():
    image, masks = disks((90, 100), [10, 12, 14, 20], 5)
    assert len(tile_grid(90, 100, TILE, OVERLAP)) == 1
    assert as_set(predict_tiled(image, stub_predict, TILE, OVERLAP)) == as_set(stub_predict(image))


@pytest.mark.parametrize("length", [1, 127, 128, 129, 300, 1000, 4001])
def test_tiles_cover_with_the_overlap_and_cores_partition(length):
    starts = tile_starts(length, TILE, OVERLAP)
    assert starts[0] == 0 and min(starts[-1] + TILE, length) == length
    assert all(0 < b - a <= TILE - OVERLAP for a, b in zip(starts, starts[1:]))
    tiles = tile_grid(length, 7, TILE, OVERLAP)
    cores = [(t.core_y0, t.core_y1) for t in tiles]
    assert cores[0][0] == -np.inf and cores[-1][1] == np.inf
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
    for t in tiles:  # each core lies at least half the overlap inside its tile's inner sides
        assert t.core_y0 == -np.inf or t.core_y0 - t.y0 >= OVERLAP / 2
        assert t.core_y1 == np.inf or t.y1 - t.core_y1 >= OVERLAP / 2


@pytest.mark.parametrize("length,tile,overlap,fitted", [(696, 512, 80, 388), (1000, 512, 80, 387), (512, 512, 80, 512),
                                                       (513, 512, 80, 297), (2048, 512, 80, 474)])
def test_a_side_takes_as_few_tiles_as_the_tile_size_needs_each_no_longer_than_that(length, tile, overlap, fitted):
    assert fitted_tile_size(length, tile, overlap) == fitted
    rows = {(t.y0, t.y1) for t in tile_grid(length, 10, tile, overlap)}
    assert len(rows) == len(tile_starts(length, tile, overlap))  # as many tiles as full-size ones
    assert {y1 - y0 for y0, y1 in rows} == {fitted}
    spans = sorted(rows)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(b0 < a1 and a1 - b0 >= overlap for (_, a1), (b0, _) in zip(spans, spans[1:]))


def test_tile_not_larger_than_overlap_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(500, 32, 32)


def test_memory_grows_with_the_tile_and_the_nuclei_not_the_image_area():
    import tracemalloc

    image, masks = disks((1200, 1200), np.full(900, 14.0), seed=4)
    assert len(masks) > 500
    tracemalloc.start()
    try:
        tiled = predict_tiled(image, stub_predict, TILE, OVERLAP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tiled) == len(masks)
    # one full-size mask per nucleus would be len(masks) x 1.44 MB; a tile's work is ~0.1 MB
    assert peak < 8 * 2**20, peak


@pytest.mark.parametrize("shift", [-3, 3])
def test_a_nucleus_predicted_differently_by_two_tiles_is_still_taken_once(shift):
    # A real model's mask of a nucleus depends on the tile (context, resizing). Here tiles in odd
    # columns grow every mask by |shift| px on one side, so a nucleus on a core boundary has its
    # centre on one side of it in one tile and on the other side in the other: without the
    # margin and the de-duplication it would be taken twice, or never.
    height, width = 200, 300
    tiles = tile_grid(height, width, TILE, OVERLAP)
    columns = sorted({t.x0 for t in tiles})
    boundary = tiles[0].core_x1
    image = np.full((height, width, 3), 20, np.uint8)
    for cy in (40, 100, 160):
        image[ellipse_mask(height, width, cy, boundary, 7, 7)] = 200
    calls = []

    def predict(tile_image):
        odd = len(calls) % len(columns) % 2 == 1  # tiles come row by row, column by column
        calls.append(odd)
        out = []
        for d in stub_predict(tile_image):
            m = d.mask
            if odd:
                grow = ((0, 0), (0, shift)) if shift > 0 else ((0, 0), (-shift, 0))
                m = CroppedMask(m.y0, m.x0 + min(shift, 0), np.pad(m.bits, grow, mode="edge"))
            out.append(Detection(d.box, d.score, 1, m))
        return out

    tiled = predict_tiled(image, predict, TILE, OVERLAP)
    assert any(calls) and len(tiled) == 3
    full = [d.mask.full((height, width)) for d in tiled]
    assert not any((full[a] & full[b]).any() for a in range(3) for b in range(a + 1, 3))
