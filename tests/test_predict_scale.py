"""The predictor at the working scale (issue 13): given or estimated diameter, tiles, bad input.

A stub model (stub_disk_model.py) stands in for Mask R-CNN.
"""
import math
import os

import numpy as np
import pytest

from maskrcnnpp.data.diameter import median_diameter
from maskrcnnpp.errors import UserError
from maskrcnnpp.predict.predictor import NucleiPredictor, Prediction, check_diameter
from stub_disk_model import StubDiskModel, disks_image, stub_cfg
from maskrcnnpp.data.synthetic import ellipse_mask


def scale_cfg(**keys):
    cfg = stub_cfg()
    for key, value in keys.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


def predictor(model=None, **keys):
    return NucleiPredictor(scale_cfg(**keys), model=model or StubDiskModel())


@pytest.mark.parametrize("diameter", [8.0, 12.6, 30.0, 45.0])
def test_estimator_recovers_a_known_diameter_within_10_percent(diameter):
    image, masks = disks_image((360, 400), diameter, 25, seed=int(diameter))
    known = median_diameter(m.sum() for m in masks)
    p = predictor()
    prediction = p(image)
    assert prediction.diameter_source == "search" and prediction.estimate_passes >= 2
    assert prediction.diameter == pytest.approx(known, rel=0.10)
    assert len(prediction.detections) == len(masks)
    # the second pass saw the nuclei at the working diameter
    last_pass = p.model.seen[-len(masks) :]
    assert median_diameter(np.pi * np.square(last_pass) / 4) == pytest.approx(17.0, rel=0.12)


def test_estimate_ignores_detections_below_the_score_threshold():
    image, masks = disks_image((300, 300), 30.0, 12)
    p = predictor(StubDiskModel(junk=60))
    p.score_threshold = 0.05  # as the evaluation wrapper does, to keep low scores for COCO AP
    prediction = p(image)
    detections = prediction.detections
    assert prediction.diameter == pytest.approx(median_diameter(m.sum() for m in masks), rel=0.1)
    assert sum(d.score >= 0.5 for d in detections) == len(masks) and len(detections) > len(masks)


def test_given_diameter_brings_nuclei_to_the_working_scale():
    image, masks = disks_image((300, 300), 34.0, 12)
    p = predictor()
    prediction = p(image, diameter=34.0)
    assert prediction.diameter_source == "given" and prediction.diameter == 34.0
    assert prediction.estimate_passes == 0 and len(prediction.detections) == len(masks)
    assert median_diameter(np.pi * np.square(p.model.seen) / 4) == pytest.approx(17.0, rel=0.1)


def test_no_nuclei_falls_back_to_the_default_with_a_warning_naming_the_file():
    warnings = []
    p = predictor()
    prediction = p(np.full((200, 200, 3), 20, np.uint8), name="empty_field.png", warn=warnings.append)
    assert prediction.detections == []
    assert prediction.diameter_source == "default" and prediction.diameter == 17.0
    assert len(warnings) == 1 and "empty_field.png" in warnings[0] and "TEST.DEFAULT_DIAMETER" in warnings[0]


def test_large_image_in_tiles_has_every_nucleus_once():
    image, masks = disks_image((700, 820), 20.0, 160, seed=7)
    p = predictor(TEST__TILE_SIZE=192, TEST__TILE_OVERLAP=48)
    detections = p(image, diameter=20.0).detections
    assert len(detections) == len(masks)
    truth = np.zeros(image.shape[:2], np.int32)
    for k, m in enumerate(masks, start=1):
        truth[m] = k
    matched = []
    for d in detections:
        full = d.mask.full(image.shape[:2])
        ids, counts = np.unique(truth[full], return_counts=True)
        k = int(ids[np.argmax(counts)])
        iou = (full & (truth == k)).sum() / (full | (truth == k)).sum()
        assert k > 0 and iou > 0.8
        matched.append(k)
    assert sorted(matched) == list(range(1, len(masks) + 1))


def test_image_size_policy_is_unchanged_without_a_diameter():
    p = NucleiPredictor(scale_cfg(INPUT__SCALE_POLICY="image_size"), model=StubDiskModel(largest=200.0))
    image, masks = disks_image((128, 128), 16.0, 5)
    prediction = p(image)
    assert prediction.diameter is None and prediction.diameter_source is None
    assert len(prediction.detections) == len(masks)
    # ResizeShortestEdge to 800 px: the model saw the nuclei 6.25 times larger
    assert median_diameter(np.pi * np.square(p.model.seen) / 4) == pytest.approx(16.0 * 800 / 128, rel=0.1)


@pytest.mark.parametrize("bad", [0.0, -5.0, 0.3, float("nan"), float("inf"), 1000.0, "big"])
def test_non_positive_or_absurd_diameter_is_refused_naming_the_option(bad):
    with pytest.raises(UserError, match="--diameter"):
        check_diameter(bad, (300, 400), "cells.png", option="--diameter")


def test_predict_refuses_a_tile_smaller_than_its_overlap_when_the_config_loads(repo_root, tmp_path, capsys):
    argv = ["--config-file", os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"),
            "--input", "x.png", "--output", str(tmp_path / "out"), "TEST.TILE_SIZE", "64", "TEST.TILE_OVERLAP", "80"]
    from maskrcnnpp.predict.cli import main
    from maskrcnnpp.errors import EXIT_USER_ERROR

    assert main(argv) == EXIT_USER_ERROR
    assert "TEST.TILE_SIZE (64) must be larger than TEST.TILE_OVERLAP (80)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any folder was made


# --- the command line: --diameter, label images of any number of nuclei -----------------


def random_detections(rng, shape, count):
    from maskrcnnpp.predict.predictor import CroppedMask, Detection

    height, width = shape
    detections = []
    for _ in range(count):
        r = rng.uniform(3, 9)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        mask = CroppedMask.from_full(ellipse_mask(height, width, cy, cx, r, r * rng.uniform(0.6, 1.4)))
        detections.append(Detection((0.0, 0.0, 1.0, 1.0), float(rng.choice([0.6, 0.7, 0.8, 0.9])), 1, mask))
    return sorted(detections, key=lambda d: -d.score)


def test_label_image_painted_from_crops_equals_the_full_size_resolution():
    from maskrcnnpp.evaluation.nuclei_metrics import resolve_overlaps
    from maskrcnnpp.predict.outputs import build_label_image

    rng = np.random.default_rng(0)
    detections = random_detections(rng, (90, 110), 60)  # many overlaps, tied scores
    labels, kept = build_label_image(detections, (90, 110))
    raw = resolve_overlaps([d.mask.full((90, 110)) for d in detections], [d.score for d in detections])
    expected_kept = [i for i in range(len(detections)) if (raw == i + 1).any()]
    assert labels.dtype == np.uint16 and kept == expected_kept and len(kept) < 60
    for label, index in enumerate(kept, start=1):
        np.testing.assert_array_equal(labels == label, raw == index + 1)


def test_more_than_65535_nuclei_give_a_32_bit_tiff(tmp_path):
    from PIL import Image

    from maskrcnnpp.predict import cli
    from maskrcnnpp.predict.inputs import prepare_output_dir
    from maskrcnnpp.predict.outputs import read_label_image
    from maskrcnnpp.predict.predictor import CroppedMask, Detection

    height, width = 270, 270
    count = 70_000
    pixels = np.random.default_rng(1).permutation(height * width)[:count]
    one = np.ones((1, 1), bool)
    detections = [
        Detection((0.0, 0.0, 1.0, 1.0), 0.9, 1, CroppedMask(int(p // width), int(p % width), one)) for p in pixels
    ]
    path = tmp_path / "dense.png"
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
    # the label image only: tracing 70,000 outlines and encoding 70,000 RLEs is slow and tested elsewhere
    layout = prepare_output_dir(str(tmp_path / "out"), formats=("labels",))
    messages = []
    result = cli.predict_image(
        lambda image, **options: Prediction(detections), str(path), "dense", 1, layout, None, report=messages.append,
    )
    assert result.label_path.endswith("dense.tif") and result.num_nuclei == count
    with Image.open(result.label_path) as image:
        labels = np.array(image)
    assert labels.dtype == np.int32 and labels.max() == count
    assert len(np.unique(labels)) == count + 1
    np.testing.assert_array_equal(read_label_image(result.label_path), labels)  # read back, not wrapped
    assert any("32-bit TIFF" in m and "dense.png" in m for m in messages)


@pytest.mark.parametrize("value", ["-3", "0", "0.2", "nan"])
def test_bad_diameter_option_is_one_line_naming_it(capsys, value):
    from maskrcnnpp.predict.cli import main
    from maskrcnnpp.errors import EXIT_USER_ERROR

    assert main(["--config-file", "none.yaml", "--input", "x.png", "--diameter", value]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --diameter") and len(err.splitlines()) == 1


def test_diameter_larger_than_the_image_fails_that_image_only(tmp_path):
    from PIL import Image

    from maskrcnnpp.predict.cli import predict_batch
    from maskrcnnpp.predict.inputs import prepare_output_dir

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "small.png")
    messages = []
    summary = predict_batch(
        lambda image, **options: Prediction([]), [str(tmp_path / "small.png")], prepare_output_dir(str(tmp_path / "out")),
        progress=False, report=messages.append, diameter=80.0,
    )
    assert summary.images == [] and len(summary.errors) == 1
    assert "--diameter" in summary.errors[0] and "small.png" in summary.errors[0]


def test_rle_from_the_crop_equals_the_full_size_encoding():
    import pycocotools.mask as mask_util

    from maskrcnnpp.predict.predictor import CroppedMask

    rng = np.random.default_rng(0)
    shape = (37, 53)
    cases = [np.zeros(shape, bool), np.ones(shape, bool)]
    for _ in range(200):
        full = np.zeros(shape, bool)
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        y1, x1 = rng.integers(y0 + 1, shape[0] + 1), rng.integers(x0 + 1, shape[1] + 1)
        full[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.uniform(0.2, 0.9)
        cases.append(full)
    for full in cases:
        expected = mask_util.encode(np.asfortranarray(full.astype(np.uint8)))
        rle = CroppedMask.from_full(full).to_rle(shape)
        assert rle["counts"] == expected["counts"].decode("ascii") and rle["size"] == list(shape)
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), full)


class ProposalCountingModel(StubDiskModel):
    """The stub with an RPN's post-NMS proposal counts, recording each pass' input size and test count."""

    def __init__(self):
        super().__init__()
        self.proposal_generator = type("RPN", (), {"post_nms_topk": {True: 2000, False: 1000}})()
        self.passes = []

    def inference(self, inputs, do_postprocess=False):
        self.passes.append((inputs[0]["image"].shape[1:], self.proposal_generator.post_nms_topk[False]))
        return super().inference(inputs, do_postprocess)


def test_proposals_are_sized_to_each_tile_and_restored_after_it():
    image, masks = disks_image((300, 300), 34.0, 12)
    model = ProposalCountingModel()
    p = predictor(model, TEST__PROPOSALS_PER_NUCLEUS=2.0, TEST__TILE_SIZE=128, TEST__TILE_OVERLAP=32)
    assert p.proposals_for(128, 128) == math.ceil(2.0 * 128 * 128 / 17.0**2) == 114
    assert p.proposals_for(10_000, 10_000) == 1000  # at most MODEL.RPN.POST_NMS_TOPK_TEST
    assert len(p(image, diameter=34.0).detections) == len(masks)
    assert len(model.passes) > 1  # in tiles, each with the count of its own area
    assert all(count == math.ceil(2.0 * h * w / 17.0**2) < 1000 for (h, w), count in model.passes)
    assert model.proposal_generator.post_nms_topk == {True: 2000, False: 1000}
    unsized = ProposalCountingModel()
    predictor(unsized, TEST__TILE_SIZE=128, TEST__TILE_OVERLAP=32)(image, diameter=34.0)
    assert {count for _, count in unsized.passes} == {1000}
