"""The zoo-table job on a model exported here from random weights: it loads the model as shipped,
scores the split and its grey and colour images, times prediction, and records the figures in
model.json without touching the weights."""
import hashlib
import json
import os

import pytest
import torch
from detectron2.modeling import build_model

from benchmarks.__main__ import main
from benchmarks.nuclei import zoo_table
from maskrcnnpp import model_zoo
from maskrcnnpp.config_loading import load_cfg
from maskrcnnpp.engine import NucleiCheckpointer
from maskrcnnpp.modeling.size_head import build_size_head

CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
FAST = ["MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "20", "TEST.TILE_SIZE", "256",
        "TEST.TILE_OVERLAP", "40", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.5"]


def test_the_zoo_table_scores_the_shipped_file_and_records_it(repo_root, tmp_path, monkeypatch, fresh_loggers):
    cfg = load_cfg(os.path.join(repo_root, CONFIG), FAST)
    torch.manual_seed(0)
    model = build_model(cfg)
    NucleiCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    head = build_size_head(cfg, model)
    # Every view read as at the working diameter: a random head may ask for a 4x upscale (many tiles).
    torch.nn.init.zeros_(head.regress[-1].weight)
    torch.nn.init.zeros_(head.regress[-1].bias)
    torch.save({"size_head": head.state_dict()}, tmp_path / "size_head.pth")
    root = tmp_path / "zoo"
    model_zoo.export_model("tiny", cfg, str(tmp_path / "model_final.pth"), {"training": "random weights"},
                           root=str(root), size_head=str(tmp_path / "size_head.pth"))
    monkeypatch.setattr(model_zoo, "ROOT", str(root))
    before = json.load(open(root / "tiny" / "model.json"))

    assert main(["zoo-table", "--model", "tiny", "--dataset", "dsb2018_sample_val", "--results-dir",
                 str(tmp_path / "results"), "--output-dir", str(tmp_path / "eval"), "--threads", "1"]) == 0

    after = json.load(open(root / "tiny" / "model.json"))
    weights = open(model_zoo.weights_path("tiny"), "rb").read()
    assert after["sha256"] == before["sha256"] == hashlib.sha256(weights).hexdigest()
    scored = after["metrics"]["datasets"]
    assert [scored[n]["num_images"] for n in ("dsb2018_sample_val", "dsb2018_sample_val_grey",
                                               "dsb2018_sample_val_colour")] == [4, 2, 2]
    assert after["metrics"]["seconds_per_image"] > 0 and after["metrics"]["threads"] == 1
    check = after["sample_check"]
    assert sorted(check) == sorted(zoo_table.SAMPLE_CHECK_IMAGES)
    assert all(isinstance(c["nuclei"], int) and 0 <= c["fg_iou"] <= 100 for c in check.values())
    evaluated = json.load(open(tmp_path / "eval" / "inference" / "dsb2018_sample_val" / "nuclei_metrics.json"))
    assert {image["diameter_source"] for image in evaluated["images"]} == {"size_head"}  # as predict runs it
    report = open(tmp_path / "results" / "model_zoo_tiny.md").read()
    overall = scored["dsb2018_sample_val"]
    assert f"| dsb2018_sample_val | 4 | {overall['fg_iou']:.2f} | {overall['fg_dice']:.2f} |" in report

    # Timing again keeps the scores: the evaluation does not run.
    monkeypatch.setattr(zoo_table, "scores", lambda *a: (_ for _ in ()).throw(AssertionError("scored again")))
    assert main(["zoo-table", "--model", "tiny", "--dataset", "dsb2018_sample_val", "--timing-only", "--results-dir",
                 str(tmp_path / "results"), "--threads", "1"]) == 0
    timed = json.load(open(root / "tiny" / "model.json"))
    assert timed["metrics"]["datasets"] == scored and timed["metrics"]["seconds_per_image"] > 0
    report = (tmp_path / "results" / "model_zoo_tiny.md").read_text()
    assert f"- scores: `{timed['metrics']['scored_by']['command']}` at commit" in report
    assert "--timing-only" not in timed["metrics"]["scored_by"]["command"]
    with pytest.raises(SystemExit) as stopped:  # no scores on that split to keep
        main(["zoo-table", "--model", "tiny", "--dataset", "dsb2018_sample_train", "--timing-only",
              "--results-dir", str(tmp_path / "results")])
    assert stopped.value.code == 2
