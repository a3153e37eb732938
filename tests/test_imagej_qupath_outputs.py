"""ImageJ/Fiji ROI sets and QuPath GeoJSON written by predict: read back with roifile and plain JSON,
rasterised, they give the label image's nuclei."""
import itertools
import json

import numpy as np
import pytest
import roifile
from matplotlib.path import Path
from PIL import Image

from label_pairs import label_image, sample_coco
from maskrcnnpp.errors import EXIT_USER_ERROR
from maskrcnnpp.predict import cli, outputs
from maskrcnnpp.predict.inputs import prepare_output_dir
from maskrcnnpp.predict.outputs import (
    edge_polygons,
    nucleus_polygons,
    write_imagej_rois,
    write_qupath_geojson,
)
from maskrcnnpp.predict.predictor import CroppedMask, Detection, Prediction


def rasterise(rings, shape):
    """Pixels whose centre lies inside an odd number of the rings (even-odd, as ImageJ's composite
    ROIs and GeoJSON holes are filled)."""
    rings = [np.asarray(ring, dtype=np.float64) for ring in rings]
    full = np.zeros(shape, dtype=bool)
    if not rings:
        return full
    corners = np.concatenate(rings)
    # Only the pixels within the rings' bounding box can be inside one.
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), (shape[1], shape[0]))
    ys, xs = np.mgrid[y0:y1, x0:x1]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    inside = np.zeros(len(centres), dtype=bool)
    for ring in rings:
        inside ^= Path(ring).contains_points(centres)
    full[y0:y1, x0:x1] = inside.reshape(y1 - y0, x1 - x0)
    return full


def geojson_rings(geometry):
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [ring for polygon in polygons for ring in polygon]


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def crops_of(labels):
    return [CroppedMask.from_full(labels == k) for k in range(1, int(labels.max()) + 1)]


@pytest.mark.parametrize("index", [0, 5, 11])
def test_roi_sets_and_geojson_read_back_to_the_label_images_nuclei(tmp_path, index):
    key, (image, annotations) = sorted(sample_coco().items())[index]
    labels = label_image(image, annotations)
    nuclei = nucleus_polygons(labels, crops_of(labels))
    scores = [1.0 - k / 1000 for k in range(1, len(nuclei) + 1)]
    write_imagej_rois(str(tmp_path / "rois.zip"), nuclei)
    write_qupath_geojson(str(tmp_path / "objects.geojson"), nuclei, scores)
    rois = roifile.roiread(str(tmp_path / "rois.zip"))
    collection = json.loads((tmp_path / "objects.geojson").read_text())
    present = [k for k in range(1, int(labels.max()) + 1) if (labels == k).any()]
    assert len(rois) == len(collection["features"]) == len(present) > 0
    assert collection["type"] == "FeatureCollection"
    checked = 0
    for k, roi, feature in zip(present, rois, collection["features"]):
        truth = labels == k
        assert roi.name == feature["properties"]["name"] == f"nucleus-{k:04d}"
        assert feature["properties"]["measurements"] == {"score": round(scores[k - 1], 5), "label": k}
        from_roi = rasterise(roi.coordinates(multi=True), labels.shape)
        from_geojson = rasterise(geojson_rings(feature["geometry"]), labels.shape)
        if truth.sum() >= 10:
            assert iou(from_roi, truth) >= 0.9 and iou(from_geojson, truth) >= 0.9, k
            checked += 1
        # pixel edges, not centres: even the smallest nucleus comes back exactly
        np.testing.assert_array_equal(from_roi, truth)
        np.testing.assert_array_equal(from_geojson, truth)
    assert checked > 0


def test_a_nucleus_in_pieces_is_a_multipolygon_and_holes_are_kept(tmp_path):
    labels = np.zeros((20, 24), np.uint16)
    labels[2:6, 2:6] = 1  # piece one
    labels[10:13, 15:20] = 1  # piece two
    labels[15, 3] = 1  # a single pixel
    labels[8:18, 6:14] = 2  # a ring with a hole ...
    labels[11:14, 9:11] = 0
    labels[12, 9] = 3  # ... holding another nucleus
    labels[0, 20], labels[1, 21] = 4, 4  # touching at a corner only
    nuclei = nucleus_polygons(labels, crops_of(labels))
    assert [len(polygons) for _, polygons in nuclei] == [3, 1, 1, 2]
    assert len(nuclei[1][1][0]) == 2  # outer ring + hole
    write_imagej_rois(str(tmp_path / "r.zip"), nuclei)
    write_qupath_geojson(str(tmp_path / "q.geojson"), nuclei, [0.9, 0.8, 0.7, 0.6])
    features = json.loads((tmp_path / "q.geojson").read_text())["features"]
    assert [f["geometry"]["type"] for f in features] == ["MultiPolygon", "Polygon", "Polygon", "MultiPolygon"]
    for (k, _), roi, feature in zip(nuclei, roifile.roiread(str(tmp_path / "r.zip")), features):
        np.testing.assert_array_equal(rasterise(roi.coordinates(multi=True), labels.shape), labels == k)
        np.testing.assert_array_equal(rasterise(geojson_rings(feature["geometry"]), labels.shape), labels == k)
        for ring in geojson_rings(feature["geometry"]):
            assert ring[0] == ring[-1]  # GeoJSON rings are closed


def test_edge_polygons_trace_pixel_edges_exactly():
    rng = np.random.default_rng(3)
    nested = np.zeros((9, 9), bool)  # square rings one inside the other, a dot at the centre
    for k in range(0, 5, 2):
        nested[k:9 - k, k:9 - k] = True
        nested[k + 1:8 - k, k + 1:8 - k] = False
    nested[4, 4] = True
    randoms = (rng.random(shape) < rng.random() for shape in (tuple(rng.integers(1, 10, size=2)) for _ in range(200)))
    for region in itertools.chain([nested], randoms):
        shape = region.shape
        polygons = edge_polygons(region)
        np.testing.assert_array_equal(rasterise([r for p in polygons for r in p], shape), region)
        # each hole sits in its own outer ring: the polygons, each filled alone, tile the region
        cover = sum(rasterise(polygon, shape).astype(int) for polygon in polygons)
        np.testing.assert_array_equal(cover, region.astype(int))
        for polygon in polygons:
            assert all(np.issubdtype(ring.dtype, np.integer) for ring in polygon)
    square = edge_polygons(np.ones((1, 1), bool), offset=(4, 7))
    assert sorted(map(tuple, square[0][0].tolist())) == [(4, 7), (4, 8), (5, 7), (5, 8)]


def _predict(tmp_path, formats):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "cells.png")
    bits = np.ones((5, 6), bool)
    detections = [Detection((3.0, 4.0, 9.0, 9.0), 0.93, 1, CroppedMask(4, 3, bits)),
                  Detection((20.0, 10.0, 26.0, 15.0), 0.61, 1, CroppedMask(10, 20, bits))]
    layout = prepare_output_dir(str(tmp_path / "out"), formats)
    return cli.predict_batch(lambda image, **options: Prediction(detections), [str(tmp_path / "cells.png")], layout, progress=False)


def test_predict_writes_the_imagej_and_qupath_outputs_by_default(tmp_path, monkeypatch):
    traced = []
    counting = lambda *args: traced.append(args) or nucleus_polygons(*args)  # noqa: E731
    for module in (cli, outputs):
        monkeypatch.setattr(module, "nucleus_polygons", counting)
    summary = _predict(tmp_path, cli.parse_formats("all"))
    assert len(traced) == 1  # the overlay, the ROI set and the GeoJSON share one tracing
    result = summary.images[0]
    assert result.imagej_path.endswith("imagej/cells.zip") and result.qupath_path.endswith("qupath/cells.geojson")
    assert [r.name for r in roifile.roiread(result.imagej_path)] == ["nucleus-0001", "nucleus-0002"]
    features = json.loads(open(result.qupath_path).read())["features"]
    assert [f["properties"]["measurements"]["score"] for f in features] == [0.93, 0.61]
    assert summary.results_json and result.overlay_path and result.label_path


def test_formats_choose_what_is_written(tmp_path):
    summary = _predict(tmp_path, ("labels", "qupath"))
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["labels", "qupath"]
    assert summary.results_json is None and summary.images[0].overlay_path is None
    assert (out / "qupath" / "cells.geojson").is_file() and (out / "labels" / "cells.png").is_file()


@pytest.mark.parametrize("value", ["overlay,fiji", "", "labels,,x"])
def test_unknown_format_is_one_line(capsys, value):
    assert cli.main(["--config-file", "none.yaml", "--input", "x.png", "--formats", value]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --formats") and len(err.splitlines()) == 1 and "imagej" in err
