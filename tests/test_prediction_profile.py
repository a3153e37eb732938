"""The prediction-profile job: one image's prediction split into exclusive parts that add up."""
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from benchmarks.__main__ import main
from benchmarks.costs import prediction_profile
from maskrcnnpp.data import synthetic
from maskrcnnpp.data.synthetic import make_image
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError
from maskrcnnpp.predict import NucleiPredictor, parse_formats
from test_trainer import register

CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
RANDOM_MODEL = ["TEST.NUCLEI.SCORE_THRESHOLD", "0.0", "TEST.DETECTIONS_PER_IMAGE", "20",
                "MODEL.RPN.POST_NMS_TOPK_TEST", "100",
                # The estimate stays within 8x of this default: a random model's guess, at least 5 px, then
                # upscales ~3x, not 8x (many tiles).
                "TEST.DEFAULT_DIAMETER", "40.0"]


def random_predictor(repo_root):
    cfg = load_cfg(os.path.join(repo_root, CONFIG), RANDOM_MODEL)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return NucleiPredictor(cfg, model=model)


def images(folder, count=2):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        path = os.path.join(folder, f"cells_{k}.png")
        Image.fromarray(make_image(rng, 96, 128)[0]).save(path)
        paths.append(path)
    return paths


def test_parts_are_exclusive_and_add_up_to_each_models_total(repo_root, tmp_path):
    paths = images(str(tmp_path))
    models = {"a": random_predictor(repo_root), "b": random_predictor(repo_root)}
    results = prediction_profile.profile(models, paths, parse_formats("labels,qupath"), warmup=0)
    for name, (clock, totals) in results.items():
        assert len(totals) == 2 and all(nuclei > 0 and scored is None for _, _, nuclei, scored in totals)
        parts = set(clock.totals)
        assert {"read", "mask pasting", "write labels", "write QuPath", prediction_profile.OTHER,
                "backbone + neck, final pass", "RPN, final pass", "box head, final pass",
                "mask head, final pass", "backbone + neck, estimate pass"} <= parts, parts
        assert "write ImageJ" not in parts and "overlay" not in parts  # only the chosen outputs
        for column in (0, 1):  # wall, CPU: the exclusive parts add up to the measured totals
            parts_sum = sum(v[column] for v in clock.totals.values())
            measured = sum(t[column] for t in totals)
            assert abs(parts_sum - measured) <= 0.05 * measured + 0.01
        assert all(v[0] >= 0 and v[1] >= 0 for v in clock.totals.values())
    text = prediction_profile.render(results, "2 sample images", "python -m benchmarks prediction-profile")
    assert "| read |" in text and "| **total per image** |" in text and "a wall ms" in text


def test_instrumentation_is_removed_afterwards(repo_root, tmp_path):
    predictor = random_predictor(repo_root)
    before = prediction_profile.predict_cli.read_image_rgb8
    clock = prediction_profile.PartClock()
    with prediction_profile.instrumented(clock, predictor.model):
        assert prediction_profile.predict_cli.read_image_rgb8 is not before
    assert prediction_profile.predict_cli.read_image_rgb8 is before
    predictor(np.asarray(Image.open(images(str(tmp_path), 1)[0]).convert("RGB")))
    assert not clock.totals  # nothing reaches the clock once the hooks are gone


def test_each_model_takes_overrides_of_its_own_and_a_malformed_one_is_named():
    models = prediction_profile.parse_models([["a", "cfg.yaml", "w.pth"],
                                              ["k300", "cfg.yaml", "w.pth", "MODEL.RPN.POST_NMS_TOPK_TEST", "300"]])
    assert models == [("a", "cfg.yaml", "w.pth", []), ("k300", "cfg.yaml", "w.pth", ["MODEL.RPN.POST_NMS_TOPK_TEST", "300"])]
    with pytest.raises(UserError, match="--model b cfg.yaml w.pth KEY: expected NAME CONFIG WEIGHTS"):
        prediction_profile.parse_models([["b", "cfg.yaml", "w.pth", "KEY"]])
    with pytest.raises(UserError, match="share a NAME"):
        prediction_profile.parse_models([["a", "x", "y"], ["a", "z", "w"]])


def test_label_images_are_scored_against_the_annotations_outside_the_timing(repo_root, tmp_path):
    truth = np.zeros((20, 30), np.int32)
    truth[2:8, 3:9], truth[10:16, 12:20] = 1, 2
    assert prediction_profile.scores(truth, truth) == (100.0, 1.0)
    half = truth.copy()
    half[half == 2] = 0  # one of the two nuclei found, exactly
    fg_iou, dsb = prediction_profile.scores(half, truth)
    assert fg_iou == pytest.approx(100 * 36 / (36 + 48)) and dsb == pytest.approx(0.5)

    records = synthetic.make_dataset(str(tmp_path / "img"), num_images=2, size=(96, 128))
    assert prediction_profile.annotated_label_image(records[0]).max() == len(records[0]["annotations"])
    models = {"a": random_predictor(repo_root)}
    results = prediction_profile.profile(models, [r["file_name"] for r in records], parse_formats("labels"),
                                         warmup=0, records=records)
    per_image = [scored for *_, scored in results["a"][1]]
    assert len(per_image) == 2 and all(0 <= f <= 100 and 0 <= d <= 1 for f, d in per_image)
    text = prediction_profile.render(results, "2 synthetic images", "cmd")
    assert f"| fg IoU (%) / DSB mAP, mean over images | {np.mean([f for f, _ in per_image]):.2f} |" in text


def test_the_job_profiles_and_scores_a_registered_dataset_from_the_command_line(repo_root, tmp_path, capsys):
    records = synthetic.make_dataset(str(tmp_path / "img"), num_images=2, size=(96, 128))
    register("synthetic_profile_scored", records)
    weights = tmp_path / "random.pth"
    torch.save({"model": random_predictor(repo_root).model.state_dict()}, weights)
    model = ["--model", "a", os.path.join(repo_root, CONFIG), str(weights), *RANDOM_MODEL]
    common = ["prediction-profile", "--dataset", "synthetic_profile_scored", "--score", "--label", "t",
              "--results-dir", str(tmp_path)] + model
    assert main(common) == 0
    text = (tmp_path / "prediction_profile_t.md").read_text()
    assert "- images: 2 of synthetic_profile_scored, outputs: labels" in text
    assert "| fg IoU (%) / DSB mAP, mean over images |" in text
    with pytest.raises(SystemExit) as stopped:
        main(common + ["--formats", "overlay"])
    assert stopped.value.code == 2
    assert "--score scores the label images: --formats overlay must include labels" in capsys.readouterr().err
