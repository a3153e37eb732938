"""The inference-cost job: trained models take turns image by image, and the report pairs
nested with FPN by seed, beside the runs' own timings; --fixed-workload gives every model the
same work."""
import os

import numpy as np
import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.nuclei import inference_cost
from benchmarks.nuclei.runner import build_cfg, run_output_dir
from maskrcnnpp.engine import Trainer
from test_compare import fake_run, write_runs


def test_the_models_take_turns_on_each_image_after_one_warm_up_each():
    calls = []

    def predictor(name, detections):
        def run(batch):
            calls.append((name, batch))
            return [{"instances": [None] * detections}]
        return run

    predictors = {"a": predictor("a", 3), "b": predictor("b", 5)}
    inputs = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    times = inference_cost.time_in_turns(predictors, inputs)
    assert calls == [("a", "a0"), ("b", "b0"),  # warm-up
                     ("a", "a0"), ("b", "b0"), ("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]
    assert [t[2] for t in times["a"]] == [3, 3, 3] and [t[2] for t in times["b"]] == [5, 5, 5]
    assert all(wall >= 0 and cpu >= 0 for ts in times.values() for wall, cpu, _ in ts)
    cpu, wall, detections = inference_cost.summary(times)["b"]
    assert detections == 5 and cpu == pytest.approx(sum(t[1] for t in times["b"]) / 3)


def test_the_report_pairs_nested_with_fpn_by_seed_beside_the_runs_own_figures(tmp_path):
    per_run = {("fpn", 0): (2.0, 1.0, 100.0), ("nested", 0): (2.2, 1.2, 110.0),
               ("fpn", 1): (3.0, 1.5, 120.0), ("nested", 1): (3.0, 1.5, 120.0)}
    runs = []
    for (model, seed), cpu in {("fpn", 0): 3.0, ("nested", 0): 3.6, ("fpn", 1): 3.2, ("nested", 1): 3.2}.items():
        runs.append(fake_run(model, seed, 70.0, 0.4))
        runs[-1]["inference_timing"]["cpu_s_per_image"] = cpu
    write_runs(tmp_path / "nuclei_runs" / "cpu-23min", runs)
    text = inference_cost.render("cpu-23min", per_run, [0, 1], 41, str(tmp_path), "cmd")
    assert "| Mask R-CNN++ (nested FPN) | 0 | 2.200 | 1.200 | 110.0 | 3.600 |" in text
    assert "- CPU s/image: +5.0 ± 7.1 % (seed 0 +10.0 %, seed 1 +0.0 %)" in text
    assert "- wall s/image: +10.0 ± 14.1 % (seed 0 +20.0 %, seed 1 +0.0 %)" in text
    assert "- the runs' own CPU s/image: +10.0 ± 14.1 % (seed 0 +20.0 %, seed 1 +0.0 %)" in text


def test_a_profile_sharing_fpn_runs_loads_them_from_their_profile(tmp_path, capsys):
    assert inference_cost.trained_in("cpu-final", "fpn") == "cpu-scale"
    assert inference_cost.trained_in("cpu-final", "nested") == "cpu-final"
    with pytest.raises(SystemExit) as exit_info:
        main(["inference-cost", "--profile", "cpu-final", "--seeds", "0", "--output-root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}/cpu-scale/fpn_seed0/model_final.pth: not found; train it first with "
        "python -m benchmarks compare --profile cpu-scale --model fpn --seeds 0")


@pytest.mark.parametrize("model_key", ["fpn", "nested"])
def test_at_a_fixed_workload_a_model_returns_exactly_n_detections_at_the_annotated_diameter(tmp_path, model_key):
    # untrained weights saved where the compare job would have left the trained ones
    output_dir = run_output_dir(str(tmp_path), "cpu-23min", model_key, 0)
    cfg, _ = build_cfg(inference_cost.PROFILES["cpu-23min"], model_key, 0, output_dir, str(tmp_path))
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    os.makedirs(output_dir)
    torch.save({"model": model.state_dict()}, os.path.join(output_dir, "model_final.pth"))

    cfg, predictor = inference_cost.load_predictor(
        "cpu-23min", model_key, 0, str(tmp_path), inference_cost.fixed_workload_opts(7))
    assert cfg.TEST.DIAMETER_SOURCE == "ground_truth" and cfg.TEST.DETECTIONS_PER_IMAGE == 7
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.0  # any score kept: the count is fixed
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 96, 120), dtype=np.uint8))
    item = {"image": image, "height": 96, "width": 120, "median_diameter": 12.0, "file_name": "x.png"}
    (output,) = predictor([item])
    assert len(output["instances"]) == 7  # the top 7 of an untrained model, whatever their scores
    assert predictor.diameters == [("x.png", 12.0, "given")]  # the annotated diameter, not an estimate


def test_the_fixed_workload_report_says_so_and_leaves_out_the_runs_own_figures(tmp_path):
    per_run = {("fpn", 0): (2.0, 1.0, 100.0), ("nested", 0): (2.1, 1.1, 100.0)}
    text = inference_cost.render("cpu-23min", per_run, [0], 41, str(tmp_path), "cmd", fixed_detections=100)
    assert text.startswith("# Inference cost of `cpu-23min`'s trained models, timed in turns, at a fixed "
                           "workload (100 detections per tile)")
    assert "| Mask R-CNN++ (nested FPN) | 0 | 2.100 | 1.100 | 100.0 |\n" in text
    assert "- CPU s/image: +5.0 % (seed 0 +5.0 %)" in text and "own" not in text
