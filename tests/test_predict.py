"""tools/predict.py and maskrcnnpp.predict: outputs, bad inputs, label images, pixel formats.

A random-init model predicts arbitrary nuclei, so the end-to-end tests use a
score threshold of 0 and check that the three outputs agree with each other;
the label-image and memory tests use hand-made detections.
"""
import json
import os
import tracemalloc

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image

from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.evaluation.nuclei_metrics import resolve_overlaps
from maskrcnnpp.predict import (
    CroppedMask,
    Detection,
    NucleiPredictor,
    build_label_image,
    coco_records,
    detections_from_raw_instances,
    draw_overlay,
    expand_inputs,
    output_stems,
    read_image_rgb8,
    read_label_image,
    rescale_to_uint8,
    write_label_image,
)
from maskrcnnpp.predict.cli import main, split_trailing_opts
from maskrcnnpp.data.synthetic import make_image

NESTED_CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
FPN_CONFIG = "configs/nuclei/mask_rcnn_R_18_FPN_cpu.yaml"
SMALL = [
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "20",
]


def save_random_weights(repo_root, config, path):
    torch.manual_seed(0)
    model = build_model(load_cfg(os.path.join(repo_root, config), SMALL))
    DetectionCheckpointer(model, save_dir=os.path.dirname(path)).save(os.path.basename(path))
    return path + ".pth"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tmp_path_factory.mktemp("weights")
    return {
        "nested": save_random_weights(repo_root, NESTED_CONFIG, str(folder / "nested")),
        "fpn": save_random_weights(repo_root, FPN_CONFIG, str(folder / "fpn")),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two synthetic grey-on-RGB nuclei images, 128 x 160."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        image, _ = make_image(rng, 128, 160)
        path = str(folder / f"cells_{k}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def predict(repo_root, weights_path, inputs, output, threshold="0", config=NESTED_CONFIG, options=()):
    # At the working diameter: a random model's size estimate would ask for large upscales (many tiles).
    argv = ["--config-file", os.path.join(repo_root, config), "--input", *inputs, "--diameter", "17", *options,
            "--output", str(output), "--score-threshold", threshold, "--no-progress",
            "MODEL.WEIGHTS", weights_path, *SMALL]
    return main(argv)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def records_by_file(output):
    with open(os.path.join(output, "coco_instances_results.json")) as f:
        records = json.load(f)
    by_file = {}
    for r in records:
        by_file.setdefault(r["file_name"], []).append(r)
    return by_file


# --- end to end -----------------------------------------------------------------------------


def test_overlay_label_image_and_json_agree(repo_root, weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(repo_root, weights["nested"], images, out) == 0
    assert error_lines(capsys.readouterr().err) == []
    by_file = records_by_file(out)
    total = 0
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        image = np.asarray(Image.open(path))
        labels = read_label_image(out / "labels" / f"{stem}.png")
        overlay = np.asarray(Image.open(out / "overlays" / f"{stem}.png").convert("RGB"))
        records = by_file.get(path, [])
        total += len(records)

        assert labels.shape == image.shape[:2] and overlay.shape == image.shape
        present = sorted(set(np.unique(labels).tolist()) - {0})
        assert present == list(range(1, len(records) + 1))
        assert [r["label"] for r in records] == present
        masks = [mask_util.decode(dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()))
                 for r in records]
        for r, mask in zip(records, masks):
            assert r["category_id"] == 1 and r["score"] >= 0.0
            assert r["bbox"][2] > 0 and r["bbox"][3] > 0
            assert mask[labels == r["label"]].all()  # a nucleus' pixels lie in its own mask
        if records:  # the same overlaps resolution, from the JSON alone, gives the label image
            resolved = resolve_overlaps(masks, [r["score"] for r in records])
            np.testing.assert_array_equal(resolved, labels)
            assert (overlay[labels > 0] != image[labels > 0]).any()
        far = cv2.dilate((labels > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
        np.testing.assert_array_equal(overlay[far], image[far])  # drawing leaves the rest alone
    assert total > 0, "a random model at threshold 0 still keeps some nuclei"


def test_channels_last_prediction_finds_the_same_nuclei(repo_root, weights, images):
    image = read_image_rgb8(images[0])
    found = {}
    for channels_last in (True, False):
        cfg = load_cfg(os.path.join(repo_root, NESTED_CONFIG), [
            "MODEL.WEIGHTS", weights["nested"], "TEST.NUCLEI.SCORE_THRESHOLD", "0.0",
            "TEST.CHANNELS_LAST", str(channels_last), *SMALL])
        predictor = NucleiPredictor(cfg)
        convs = [m.weight for m in predictor.model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.is_contiguous(memory_format=torch.channels_last) == channels_last
                   for w in convs if w.shape[-1] > 1)
        found[channels_last] = predictor(image, diameter=17.0).detections
    assert found[True] and len(found[True]) == len(found[False])
    for a, b in zip(found[True], found[False]):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.box == pytest.approx(b.box, abs=1e-2)


def test_unreadable_file_is_reported_and_the_rest_processed(repo_root, weights, images, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert predict(repo_root, weights["nested"], [images[0], str(broken), images[1]], out) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and str(broken) in error_lines(err)[0]
    assert "Traceback" not in err
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        assert (out / "labels" / f"{stem}.png").is_file()
        assert (out / "overlays" / f"{stem}.png").is_file()
    assert not (out / "labels" / "broken.png").exists()
    assert set(records_by_file(out)) <= set(images)


def test_multi_page_tiff_is_refused_naming_its_pages_unless_one_is_chosen(repo_root, weights, images, tmp_path,
                                                                        capsys):
    pages = [np.zeros((128, 160, 3), np.uint8), np.asarray(Image.open(images[0]).convert("RGB")),
             np.full((128, 160, 3), 200, np.uint8)]
    stack = tmp_path / "stack.tif"
    Image.fromarray(pages[0]).save(stack, save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]])
    out = tmp_path / "out"
    assert predict(repo_root, weights["nested"], [str(stack), images[1]], out) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line == (f"error: {stack}: the file holds 3 pages (a z-stack or time series); choose one with "
                    "--page N (1 to 3), or save each page as an image of its own")
    assert not (out / "labels" / "stack.png").exists() and (out / "labels" / "cells_1.png").is_file()

    np.testing.assert_array_equal(read_image_rgb8(str(stack), page=2), pages[1])
    assert predict(repo_root, weights["nested"], [str(stack)], out, options=["--page", "2"]) == 0
    assert (out / "labels" / "stack.png").is_file()
    assert predict(repo_root, weights["nested"], [str(stack)], out, options=["--page", "4"]) == 1
    assert "page 4 is out of range, the file holds 3 page(s)" in error_lines(capsys.readouterr().err)[0]


def test_empty_directory_is_reported_and_the_rest_processed(repo_root, weights, images, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert predict(repo_root, weights["nested"], [str(empty), images[0]], out) == 1
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and str(empty) in error_lines(err)[0]
    assert (out / "labels" / "cells_0.png").is_file()


def test_mismatched_weights_fail_before_processing_naming_keys(repo_root, weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(repo_root, weights["fpn"], images, out) == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err
    assert weights["fpn"] in lines[0]
    # The nested FPN names its laterals as FPN does, with other widths.
    assert "missing keys (backbone." in lines[0]
    assert "keys of another shape (backbone.fpn_lateral" in lines[0]
    assert not (out / "coco_instances_results.json").exists()
    assert os.listdir(out / "labels") == [] and os.listdir(out / "overlays") == []


def test_missing_weights_file_is_one_line(repo_root, images, tmp_path, capsys):
    missing = str(tmp_path / "nope.pth")
    assert predict(repo_root, missing, images, tmp_path / "out") == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and missing in lines[0]


def test_unwritable_output_folder_is_one_line(repo_root, weights, images, tmp_path, capsys):
    # A path under a regular file cannot be created, even by root (chmod would not stop root).
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "predictions"
    assert predict(repo_root, weights["nested"], images, out) == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and str(out) in lines[0] and "Traceback" not in err


def test_grey_rgba_and_16_bit_inputs_are_predicted(repo_root, weights, tmp_path, capsys):
    rng = np.random.default_rng(1)
    rgb, _ = make_image(rng, 96, 128)
    grey = rgb[:, :, 0]
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(grey.shape, 255, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray((grey.astype(np.uint16) * 16 + 100)).save(folder / "deep.png")  # 12-bit data
    Image.fromarray(rgb).save(folder / "colour.jpg")
    assert Image.open(folder / "deep.png").mode.startswith("I;16")

    for name in ("grey.png", "rgba.png", "deep.png", "colour.jpg"):
        image = read_image_rgb8(str(folder / name))
        assert image.dtype == np.uint8 and image.shape == (96, 128, 3), name
    deep = read_image_rgb8(str(folder / "deep.png"))
    assert deep.min() == 0 and deep.max() == 255  # stretched, not divided by 257 (nearly black)
    np.testing.assert_array_equal(read_image_rgb8(str(folder / "grey.png")), rgb)

    out = tmp_path / "out"
    assert predict(repo_root, weights["nested"], [str(folder)], out) == 0
    assert error_lines(capsys.readouterr().err) == []
    assert sorted(os.listdir(out / "labels")) == ["colour.png", "deep.png", "grey.png", "rgba.png"]


# --- label images, overlays and JSON from hand-made detections ---------------------------


def square_detection(shape, y, x, size, score):
    mask = np.zeros(shape, dtype=bool)
    mask[y : y + size, x : x + size] = True
    return Detection((x, y, x + size, y + size), score, 1, CroppedMask.from_full(mask)), mask


def test_label_image_resolves_overlaps_and_round_trips(tmp_path):
    shape = (40, 50)
    dets, masks = zip(
        square_detection(shape, 5, 5, 15, 0.9),   # A
        square_detection(shape, 15, 15, 15, 0.8),  # B overlaps A: the overlap is A's
        square_detection(shape, 8, 8, 5, 0.3),    # C inside A: no pixel left, dropped
        square_detection(shape, 25, 25, 10, 0.7),  # D overlaps B, scores lower than B
    )
    labels, kept = build_label_image(list(dets), shape)
    assert kept == [0, 1, 3] and labels.dtype == np.uint16
    resolved = resolve_overlaps(list(masks), [d.score for d in dets])
    for new_label, index in enumerate(kept, start=1):
        np.testing.assert_array_equal(labels == new_label, resolved == index + 1)
    assert labels[16, 16] == 1 and labels[27, 27] == 2 and labels[33, 33] == 3

    path = tmp_path / "labels.png"
    write_label_image(labels, path)
    assert Image.open(path).mode == "I;16"
    back = read_label_image(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)


def test_label_image_keeps_more_than_255_nuclei(tmp_path):
    shape = (100, 120)
    dets = [square_detection(shape, 5 * (k // 20), 6 * (k % 20), 4, 1 - k / 1000)[0] for k in range(300)]
    labels, kept = build_label_image(dets, shape)
    assert len(kept) == 300 and labels.max() == 300
    write_label_image(labels, tmp_path / "many.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "many.png"), labels)


def test_exports_of_a_2048px_image_with_hundreds_of_nuclei_stay_small():
    shape, count = (2048, 2048), 400
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    disc = (yy - 11.5) ** 2 + (xx - 11.5) ** 2 <= 121
    dets = []
    for k in range(count):
        y, x = rng.integers(0, 2048 - 24, size=2)
        dets.append(Detection((x, y, x + 24, y + 24), float(rng.random()), 1, CroppedMask(int(y), int(x), disc)))
    image = np.zeros(shape + (3,), dtype=np.uint8)

    tracemalloc.start()
    labels, kept = build_label_image(dets, shape)
    kept_dets = [dets[i] for i in kept]
    overlay, drawn = draw_overlay(image, labels, [d.mask for d in kept_dets])
    records = coco_records(kept_dets, 1, "big.png", shape)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert drawn == len(kept) == len(records) == int(labels.max()) > 300
    assert overlay.shape == image.shape and overlay[labels > 0].any()
    all_masks_at_once = count * shape[0] * shape[1]  # bytes of an N x H x W bool array
    assert peak < all_masks_at_once / 10, f"peak {peak / 2**20:.0f} MiB"


def test_raw_detections_are_pasted_as_small_crops_in_score_order():
    height, width = 2048, 1536
    n = 50
    raw = Instances((256, 192))  # the model saw the image at 1/8 scale
    x0 = torch.linspace(0, 180, n)
    raw.pred_boxes = Boxes(torch.stack([x0, x0, x0 + 4, x0 + 6], dim=1))
    raw.scores = torch.linspace(0.1, 0.99, n)
    raw.pred_classes = torch.zeros(n, dtype=torch.int64)
    raw.pred_masks = torch.ones(n, 1, 28, 28)

    dets = detections_from_raw_instances(raw, (height, width), score_threshold=0.5)
    assert len(dets) == int((raw.scores >= 0.5).sum())
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for d in dets:
        bx0, by0, bx1, by1 = d.box
        assert by1 - by0 == pytest.approx(48, abs=0.01) and bx1 - bx0 == pytest.approx(32, abs=0.01)
        assert d.mask.bits.shape[0] <= 50 and d.mask.bits.shape[1] <= 34  # crop, not 2048 x 1536
        assert d.mask.area > 0.9 * 48 * 32
        assert abs(d.mask.y0 - by0) <= 1 and abs(d.mask.x0 - bx0) <= 1


def test_masks_pasted_together_are_detectron2s_pasted_one_at_a_time(monkeypatch):
    from detectron2.layers import paste_masks_in_image

    from maskrcnnpp.predict import predictor

    rng = np.random.default_rng(0)
    height, width = 300, 260
    # clipped at the image's edges, tiny, empty; a large one at the corner batched with a larger one
    boxes = [(-2.0, 5.5, 40.25, 30.0), (250.7, 280.2, 260.0, 300.0), (10.0, 10.0, 10.4, 10.3), (30.0, 30.0, 30.0, 45.0),
             (100.0, 100.0, 260.0, 300.0), (0.0, 0.0, 170.0, 210.0)]
    for _ in range(60):
        x0, y0 = rng.uniform(-5, width), rng.uniform(-5, height)
        w, h = rng.choice([rng.uniform(1, 12), rng.uniform(12, 120)], size=2)
        boxes.append((x0, y0, min(x0 + w, width), min(y0 + h, height)))
    probabilities = [torch.as_tensor(rng.random((28, 28)), dtype=torch.float32) for _ in boxes]
    monkeypatch.setattr(predictor, "PASTE_BATCH_PIXELS", 80_000)  # several batches
    for threshold in (0.5, 0.2):  # under 0.5, samples reach past the box
        pasted = predictor.paste_masks(probabilities, boxes, (height, width), threshold)
        assert len(pasted) == len(boxes) and pasted[3].bits.size == 0  # an empty box: an empty mask
        for box, p, mask in zip(boxes, probabilities, pasted):
            expected = paste_masks_in_image(p[None], Boxes(torch.tensor([box], dtype=torch.float32)), (height, width),
                                            threshold=threshold)[0]
            np.testing.assert_array_equal(mask.full((height, width)), expected.numpy(), err_msg=f"{box} {threshold}")


# --- inputs and arguments ------------------------------------------------------------------


def test_inputs_expand_files_folders_and_patterns_with_distinct_names(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / folder / "img.png")
    (tmp_path / "a" / "readme.txt").write_text("")
    specs = [str(tmp_path / "a"), str(tmp_path / "*" / "img.png"), str(tmp_path / "missing.tif")]
    paths, errors = expand_inputs(specs)
    assert paths == [str(tmp_path / "a" / "img.png"), str(tmp_path / "b" / "img.png")]
    assert len(errors) == 1 and "missing.tif" in errors[0]
    assert output_stems(paths) == ["img", "img_2"]


def test_trailing_config_overrides_are_split_from_inputs():
    inputs, opts = split_trailing_opts(["a.png", "dir/", "MODEL.WEIGHTS", "w.pth"], ["MODEL.DEVICE", "cpu"])
    assert inputs == ["a.png", "dir/"]
    assert opts == ["MODEL.WEIGHTS", "w.pth", "MODEL.DEVICE", "cpu"]


def test_16_bit_rescaling_maps_percentiles_to_the_8_bit_range():
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    scaled = rescale_to_uint8(ramp)
    assert scaled.dtype == np.uint8 and scaled.min() == 0 and scaled.max() == 255
    assert 120 <= scaled[32, 0] <= 135  # the middle of the range stays in the middle
    assert (rescale_to_uint8(np.full((4, 4), 7, np.uint16)) == 0).all()


def test_demo_config_trains_on_the_embedded_sample(repo_root):
    cfg = load_cfg(os.path.join(repo_root, "configs/nuclei/demo_R_18_NestedFPN_cpu.yaml"))
    assert cfg.DATASETS.TRAIN == ("dsb2018_sample_train",)
    assert cfg.DATASETS.TEST == ("dsb2018_sample_val",)
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_nested_fpn_backbone"
    assert cfg.MODEL.DEVICE == "cpu" and cfg.MODEL.RESNETS.DEPTH == 18
    assert cfg.SOLVER.STEPS[-1] < cfg.SOLVER.MAX_ITER


def test_the_overlay_draws_a_one_pixel_nucleus_and_leaves_the_rest_of_the_image_alone():
    labels = np.zeros((40, 40), dtype=np.uint16)
    labels[20, 20] = 1
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    overlay, drawn = draw_overlay(image, labels, [CroppedMask(20, 20, np.ones((1, 1), dtype=bool))])
    assert drawn == 1 and (overlay[20, 20] != 128).any()
    np.testing.assert_array_equal(overlay[:15], image[:15])
