"""The model zoo's committed models, as shipped: each loads strictly into its own config, and
predict (with no config: the default model) finds on two embedded sample images the nuclei its
model.json recorded (count and fg IoU, within a tolerance). A damaged or mismatched file, or a
change to the code that alters what the shipped model predicts, fails here on both Detectron2s."""
import os

import pytest
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from benchmarks.nuclei import zoo_table
from maskrcnnpp import model_zoo
from maskrcnnpp.config_loading import load_cfg
from maskrcnnpp.data.semantic_mapper import foreground_mask
from maskrcnnpp.evaluation.nuclei_metrics import foreground_iou_dice
from maskrcnnpp.predict import read_label_image
from maskrcnnpp.predict.cli import main
from maskrcnnpp.weights import load_weights_strictly

MODELS = model_zoo.list_models()
FG_IOU_TOLERANCE = 1.0  # points: float16 weights and the two Detectron2s' RoIAlign differ slightly


def count_tolerance(expected):
    return max(3, round(0.05 * expected))


def test_the_zoo_ships_one_default_model():
    assert model_zoo.default_model() in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_a_zoo_model_loads_strictly_into_its_config(name):
    cfg = load_cfg(model_zoo.config_path(name))
    model = build_model(cfg)
    load_weights_strictly(model, model_zoo.PREFIX + name, model_zoo.config_path(name))
    info = model_zoo.model_info(name)
    assert info["sha256"] and os.path.getsize(model_zoo.weights_path(name)) <= model_zoo.MAX_FILE_BYTES
    assert cfg.MODEL.WEIGHTS == "" and info["command"].startswith("python tools/train_net.py")


@pytest.mark.parametrize("name", MODELS)
def test_a_zoo_model_finds_the_sample_nuclei_it_recorded(name, tmp_path, fresh_loggers):
    check = model_zoo.model_info(name)["sample_check"]
    records = {os.path.basename(r["file_name"]): r for r in DatasetCatalog.get("dsb2018_sample_train")}
    chosen = [records[image] for image in sorted(check)]
    model = [] if name == model_zoo.default_model() else ["--model", name]
    assert main(["--input", *(r["file_name"] for r in chosen), "--output", str(tmp_path), "--formats", "labels",
                 "--no-progress", *model]) == 0
    for record in chosen:
        expected = check[os.path.basename(record["file_name"])]
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        labels = read_label_image(str(tmp_path / "labels" / f"{stem}.png"))
        truth = foreground_mask(record["annotations"], record["height"], record["width"]) > 0
        fg_iou = 100 * foreground_iou_dice(labels > 0, truth)[0]
        found = len(set(labels.ravel().tolist()) - {0})
        assert abs(found - expected["nuclei"]) <= count_tolerance(expected["nuclei"]), (stem, found, expected)
        assert abs(fg_iou - expected["fg_iou"]) <= FG_IOU_TOLERANCE, (stem, fg_iou, expected)


def test_the_readme_s_zoo_table_shows_each_model_as_its_model_json_scores_it(repo_root):
    readme = open(os.path.join(repo_root, "README.md"), encoding="utf-8").read()
    lines = zoo_table.zoo_table_lines()
    assert len(lines) == 2 + len(MODELS)
    for line in lines:
        assert line in readme.splitlines()
