"""The compare job (benchmarks.nuclei): statistics over seeds, pairing, verdicts, resume, reports.

Training is replaced by hand-made run records; a real smoke run is
`python -m benchmarks compare --profile smoke --results-dir /tmp/r --output-root /tmp/o`.
"""
import json
import math
import multiprocessing
import os

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.nuclei import metrics, report, runner, summaries
from benchmarks.nuclei.profiles import FINE_TUNING, MODELS, PROFILES
from benchmarks.records import OutputDirInUse, lock_run, write_nuclei_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_run(model, seed, fg_iou, dsb_map, segm_ap=30.0, per_image=None):
    return {
        "profile": "smoke", "model": model, "model_name": MODELS[model],
        "seed": seed, "config": "c.yaml", "overrides": [], "test_set": "dsb2018_sample_val",
        "max_iter": 5, "ims_per_batch": 2,
        "metrics": {"nuclei": {"fg_iou": fg_iou, "fg_dice": fg_iou + 10, "dsb_map": dsb_map,
                               "num_images": 2},
                    "segm": {"AP": segm_ap, "AP50": float("nan")}, "bbox": {"AP": 1.0}},
        "per_image": per_image or [],
        "parameters": 16_000_000 if model == "fpn" else 16_500_000,
        "gflops": {"input": [3, 128, 128], "whole_model": 10.0, "backbone_and_neck": 1.0},
        "train_timing": {"wall_s_per_iter": 2.0, "cpu_s_per_iter": 1.5},
        "inference_timing": {"images_per_s": 4.0, "cpu_s_per_image": 0.3},
        "command": "python -m benchmarks compare --profile smoke", "git_commit": "abc",
        "machine": "test CPU", "loadavg_at_end": [3.0, 2.0, 1.0], "date": "2026-01-01 00:00 UTC",
    }


def write_runs(runs_dir, runs):
    for r in runs:
        write_nuclei_run(str(runs_dir), r)


def compare(*argv):
    return main(["compare", *argv])



def test_mean_std_and_paired_differences():
    runs = [fake_run("fpn", 0, 70.0, 0.40), fake_run("fpn", 1, 72.0, 0.44),
            fake_run("fpn", 2, 74.0, 0.42),
            fake_run("nested", 0, 71.0, 0.45), fake_run("nested", 1, 75.0, 0.47)]
    table = metrics.aggregate(runs)
    mean, std, n = table["fpn"]["fg_iou"]
    assert (mean, n) == (72.0, 3) and std == pytest.approx(2.0)  # sample std of 70, 72, 74
    mean, std, n = table["nested"]["dsb_map"]
    assert mean == pytest.approx(0.46) and std == pytest.approx(math.sqrt(2) * 0.01) and n == 2
    assert table["nested"]["segm_ap50"] == (None, None, 0)  # NaN from COCO is no value

    paired = metrics.paired_differences(runs)
    assert paired["fg_iou"]["seeds"] == [0, 1]  # seed 2 has no nested run
    assert paired["fg_iou"]["diffs"] == pytest.approx([1.0, 3.0])
    assert paired["fg_iou"]["mean"] == pytest.approx(2.0)
    assert paired["fg_iou"]["std"] == pytest.approx(math.sqrt(2))
    assert paired["dsb_map"]["diffs"] == pytest.approx([0.05, 0.03])


def test_verdict_compares_the_paired_difference_with_the_seed_spread():
    clear = [fake_run("fpn", s, 70.0 + 0.1 * s, 0.40) for s in range(3)]
    clear += [fake_run("nested", s, 75.0 + 0.1 * s, 0.40 + 0.01 * s) for s in range(3)]
    assert metrics.verdict(clear, "fg_iou").startswith("yes")
    assert metrics.verdict(clear, "dsb_map").startswith("no")
    # A model's spread over all its seeds counts, those without a pair too: FPN's extra seed 3
    # widens the spread past the +5 difference.
    wide = clear + [fake_run("fpn", 3, 90.0, 0.40)]
    assert metrics.verdict(wide, "fg_iou").startswith("no")

    one_pair = [fake_run("fpn", 0, 70.0, 0.4), fake_run("nested", 0, 90.0, 0.9)]
    assert metrics.verdict(one_pair, "fg_iou").startswith("too few")


def test_breakdown_groups_images_by_modality_and_size():
    images = [{"height": 256, "width": 256, "modality": "grey", "fg_iou": 80.0, "dsb_map": 0.5},
              {"height": 256, "width": 256, "modality": "grey", "fg_iou": 60.0, "dsb_map": 0.3},
              {"height": 520, "width": 696, "modality": "colour", "fg_iou": 40.0, "dsb_map": 0.1}]
    better = [dict(i, fg_iou=i["fg_iou"] + 5) for i in images]
    runs = [fake_run("fpn", 0, 0, 0, per_image=images), fake_run("nested", 0, 0, 0, per_image=better)]
    rows = metrics.breakdown(runs, metrics.modality_group)
    assert [(r["group"], r["images"]) for r in rows] == [("grey", 2), ("colour", 1)]
    assert rows[0][("fpn", "fg_iou")] == pytest.approx(70.0)
    assert rows[0][("diff", "fg_iou")] == pytest.approx(5.0)
    sizes = metrics.breakdown(runs, metrics.size_group)
    assert sizes[1]["group"] == "520×696" and sizes[1][("nested", "dsb_map")] == pytest.approx(0.1)


def test_train_timing_sums_the_segments_of_a_resumed_run(tmp_path):
    first = {"start_iter": 0, "end_iter": 200, "wall_s": 400.0, "cpu_s": 300.0}
    runner.train_timing(str(tmp_path), first)
    # A resumed process trains 200..600; one that found the run finished trains nothing.
    runner.train_timing(str(tmp_path), {"start_iter": 200, "end_iter": 600, "wall_s": 1200.0, "cpu_s": 500.0})
    timing = runner.train_timing(str(tmp_path), {"start_iter": 600, "end_iter": 600, "wall_s": 1.0, "cpu_s": 1.0})
    assert timing["iterations_timed"] == 600 and len(timing["segments"]) == 2
    assert timing["wall_s_per_iter"] == pytest.approx(1600.0 / 600)
    assert timing["cpu_s_per_iter"] == pytest.approx(800.0 / 600)


def fake_costs(profile):
    return {"input": [3, 128, 128], "models": {
        "fpn": {"parameters": 10_000_000, "gflops_whole": 20.0, "gflops_backbone_and_neck": 2.0, "detections": 400},
        "nested": {"parameters": 10_500_000, "gflops_whole": 19.0, "gflops_backbone_and_neck": 1.5, "detections": 400}}}


def test_resume_skips_finished_runs_and_renders_each_finished_run_once(tmp_path, monkeypatch):
    results = tmp_path / "results"
    runs_dir = results / "nuclei_runs" / "smoke"
    write_runs(runs_dir, [fake_run("fpn", 0, 70.0, 0.40)])
    calls, rendered, costed = [], [], []

    def fake_run_one(profile, model, seed, runs_dir_arg, output_root, command):
        calls.append((model, seed))
        assert runs_dir_arg == str(runs_dir) and command.endswith("compare --profile smoke --in-process "
                                                                   f"--results-dir {results} --output-root {tmp_path / 'out'}")
        write_runs(runs_dir, [fake_run(model, seed, 71.0 + seed + (model == "nested"), 0.41)])

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    monkeypatch.setattr(runner, "model_costs", lambda profile: costed.append(profile) or fake_costs(profile))
    monkeypatch.setattr(runner, "write_report", lambda name, profile, results_dir: rendered.append(name))
    argv = ["--profile", "smoke", "--in-process", "--results-dir", str(results), "--output-root", str(tmp_path / "out")]
    assert compare(*argv) == 0
    assert calls == [("nested", 0), ("fpn", 1), ("nested", 1)]  # paired seeds first
    assert rendered == ["smoke"] * 3  # once after each finished run

    calls.clear(), rendered.clear()
    assert compare(*argv) == 0
    assert calls == [] and rendered == ["smoke"]  # everything finished: nothing retrained, rendered once
    assert len(costed) == 1 and json.loads((runs_dir / "costs.json").read_text()) == fake_costs(None)


def test_size_costs_come_from_costs_json_and_times_from_the_runs():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    costs = fake_costs(None)
    fpn, nested = (metrics.cost_row(metrics.by_model(runs)[m], metrics.model_cost(costs, m)) for m in ("fpn", "nested"))
    assert (fpn["params_m"], fpn["gmacs_backbone"], fpn["gmacs_whole"]) == (10.0, 2.0, 20.0)
    assert (nested["params_m"], nested["gmacs_backbone"]) == (10.5, 1.5)
    assert fpn["train_cpu"] == 1.5 and nested["infer_cpu"] == 0.3  # from the runs' timings
    assert metrics.cost_row(metrics.by_model(runs)["fpn"])["params_m"] == 16.0  # without costs.json: the run's
    text = "\n".join(report.gflops_line(PROFILES["smoke"], costs).splitlines())
    assert "400 / 400 (FPN / nested) detections" in text


def test_render_only_with_no_runs_says_so(tmp_path):
    assert compare("--profile", "cpu-small", "--render-only", "--results-dir", str(tmp_path)) == 0
    assert "No finished runs yet." in (tmp_path / "nuclei_instance_cpu-small.md").read_text()
    assert not (tmp_path / "nuclei_instance_cpu-small.png").exists()


def test_a_report_and_its_chart_are_written_from_the_runs(tmp_path):
    write_runs(tmp_path / "nuclei_runs" / "smoke", [fake_run(m, s, 70.0 + s, 0.4) for m in MODELS for s in (0, 1)])
    assert compare("--profile", "smoke", "--render-only", "--results-dir", str(tmp_path)) == 0
    assert "![chart](nuclei_instance_smoke.png)" in (tmp_path / "nuclei_instance_smoke.md").read_text()
    with open(tmp_path / "nuclei_instance_smoke.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_report_header_names_the_configs_the_runs_trained():
    runs = [dict(fake_run("fpn", 0, 70.0, 0.4), config="configs/old_fpn.yaml")]
    header = report.header_section("smoke", PROFILES["smoke"], runs)[2]
    assert "(`configs/old_fpn.yaml` vs `configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml`)" in header


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_build_configs_that_differ_only_in_the_backbone(name, tmp_path):
    profile = PROFILES[name]
    cfgs = {m: runner.build_cfg(profile, m, 3, str(tmp_path))[0] for m in ("fpn", "nested")}
    assert cfgs["fpn"].MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    assert cfgs["nested"].MODEL.BACKBONE.NAME == "build_resnet_nested_fpn_backbone"
    for cfg in cfgs.values():
        assert cfg.SEED == 3 and cfg.OUTPUT_DIR == str(tmp_path)
    for key in ("SOLVER", "INPUT", "DATASETS", "DATALOADER"):
        assert cfgs["fpn"][key] == cfgs["nested"][key], key
    if name.startswith("val-"):  # a screen, scored on val, never on test: one seed may do
        assert cfgs["fpn"].DATASETS.TEST == ("dsb2018_val",) and profile.seeds
    else:
        assert len(profile.seeds) >= 2 and cfgs["fpn"].DATASETS.TEST != ("dsb2018_val",)
    for other in (profile.fpn_runs_from, profile.baseline, profile.weights_from):
        assert not other or other in PROFILES
    if profile.fpn_runs_from:  # the shared FPN runs were trained with this profile's schedule and data
        shared = runner.build_cfg(PROFILES[profile.fpn_runs_from], "fpn", 3, str(tmp_path))[0]
        assert shared.dump() == cfgs["fpn"].dump()
    if profile.baseline:  # shown beside another setting: the same schedule and data, not the same config
        base = runner.build_cfg(PROFILES[profile.baseline], "fpn", 3, str(tmp_path))[0]
        assert base.SOLVER == cfgs["fpn"].SOLVER and base.DATASETS == cfgs["fpn"].DATASETS
        assert base.INPUT != cfgs["fpn"].INPUT or base.MODEL != cfgs["fpn"].MODEL


def test_a_run_locked_by_another_process_is_skipped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "model_costs", fake_costs)
    monkeypatch.setattr(runner, "write_report", lambda *a: None)
    monkeypatch.setattr(runner, "run_one", lambda p, m, s, *a: calls.append((m, s)))
    out = tmp_path / "out"
    held = lock_run(runner.run_output_dir(str(out), "smoke", "nested", 0))
    with pytest.raises(OutputDirInUse):
        lock_run(runner.run_output_dir(str(out), "smoke", "nested", 0))
    argv = ["--profile", "smoke", "--seeds", "0", "--in-process", "--results-dir", str(tmp_path / "results"),
            "--output-root", str(out)]
    compare(*argv)
    assert calls == [("fpn", 0)]
    held.close()
    calls.clear()
    compare(*argv)
    assert calls == [("fpn", 0), ("nested", 0)]  # no records were written, so both are pending


def test_model_costs_match_the_committed_costs_scaled_to_the_test_size():
    # smoke runs cpu-small's configs (only data and schedule differ) at 128 px instead of 256 px.
    costs = runner.model_costs(PROFILES["smoke"])
    with open(os.path.join(REPO, "benchmarks", "results", "nuclei_runs", "cpu-small", "costs.json")) as f:
        committed = json.load(f)
    assert costs["input"] == [3, 128, 128] and committed["input"] == [3, 256, 256]
    for model in ("fpn", "nested"):
        mine, theirs = costs["models"][model], committed["models"][model]
        assert mine["parameters"] == theirs["parameters"], model
        # Every counted op of the backbone and neck scales with the input area.
        assert 4 * mine["gflops_backbone_and_neck"] == pytest.approx(theirs["gflops_backbone_and_neck"])
        # Score threshold 0: the heads run on as many detections as the config allows.
        assert mine["detections"] == theirs["detections"] == 400
        assert mine["gflops_whole"] > mine["gflops_backbone_and_neck"]


def test_object_sizes_are_paired_by_seed_and_an_absent_size_stays_empty():
    runs = []
    for seed, (fpn_small, nested_small) in enumerate([(20.0, 23.0), (22.0, 24.0)]):
        for model, small in (("fpn", fpn_small), ("nested", nested_small)):
            run = fake_run(model, seed, 70.0, 0.4)
            run["metrics"]["segm"].update({"APs": small, "APm": 40.0, "APl": None})
            runs.append(run)
    small = metrics.paired_difference(runs, lambda r: metrics.field_value(r, "segm", "APs"))
    assert small["diffs"] == pytest.approx([3.0, 2.0]) and small["mean"] == pytest.approx(2.5)
    large = metrics.paired_difference(runs, lambda r: metrics.field_value(r, "segm", "APl"))
    assert large["seeds"] == [] and large["mean"] is None
    rows = {line.split(" | ")[0]: line for line in report.object_size_section(runs, ["fpn", "nested"])}
    assert rows["| large: > 96² px"].count("–") == 3  # no large nuclei: empty, not NaN or zero


def test_runs_resumed_from_a_checkpoint_are_named():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    runs[1]["train_timing"].update(iterations_timed=2)  # fpn seed 1 was killed and resumed
    runs[2]["train_timing"].update(iterations_timed=5)  # nested seed 0 trained all 5 in one go
    (line,) = report.resumed_lines(runs, metrics.model_names(runs))
    assert line.endswith("Mask R-CNN (FPN) seed 1 (2 iterations timed)")


def test_times_from_different_cpus_are_not_compared():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    assert metrics.timed_on_same_cpus(metrics.by_model(runs))
    runs[3]["machine"] = "Other CPU, 2 logical cores"
    grouped = metrics.by_model(runs)
    assert not metrics.timed_on_same_cpus(grouped)
    assert metrics.cpu_models(grouped["nested"]) == ["Other CPU", "test CPU"]
    cells = report.results_table(runs, None)[-1].strip("| ").split(" | ")[-7:]
    # Size figures still compare; measured times across machines do not.
    assert all(cell.endswith(" %") for cell in cells[:3]) and cells[3:] == ["different CPUs"] * 4
    assert len(report.machine_lines(runs, metrics.model_names(runs))) == 3  # one per model, and why


def test_iterations_are_listed_per_run_when_a_time_budget_made_them_differ():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    assert metrics.iterations_text(runs) == "5"
    for run, iterations in zip(runs, (1580, 1621, 1460, 1569)):
        run["max_iter"] = iterations
    assert metrics.iterations_text(metrics.by_model(runs)["fpn"]) == "1580, 1621"


def test_seeds_added_beyond_the_profile_are_aggregated():
    runs = [fake_run(m, s, 70.0 + s, 0.4) for m in ("fpn", "nested") for s in (0, 1, 5)]
    assert 5 not in PROFILES["smoke"].seeds
    mean, std, n = metrics.aggregate(runs)["fpn"]["fg_iou"]
    assert n == 3 and mean == pytest.approx(72.0)
    assert metrics.paired_differences(runs)["fg_iou"]["seeds"] == [0, 1, 5]


def test_an_ablation_profile_pairs_its_nested_runs_with_the_shared_fpn_runs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_runs(results / "nuclei_runs" / "cpu-small",
               [fake_run("fpn", s, 70.0, 0.40) for s in (0, 1)] + [fake_run("nested", 0, 10.0, 0.1)])
    write_runs(results / "nuclei_runs" / "cpu-small-nested64",
               [fake_run("nested", 0, 71.0, 0.42), fake_run("nested", 1, 73.0, 0.42)])
    seen = []
    monkeypatch.setattr(report, "render_markdown", lambda name, profile, runs, *a: seen.append(runs) or "")
    monkeypatch.setattr(report, "render_chart", lambda *a: None)
    assert compare("--profile", "cpu-small-nested64", "--render-only", "--results-dir", str(results)) == 0
    (runs,) = seen
    assert [(r["model"], r["seed"], r["metrics"]["nuclei"]["fg_iou"]) for r in runs] == [
        ("fpn", 0, 70.0), ("fpn", 1, 70.0), ("nested", 0, 71.0), ("nested", 1, 73.0)]  # not cpu-small's nested


def test_an_ablation_profile_trains_only_its_nested_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_one", lambda profile, model, seed, *a: calls.append((model, seed)))
    monkeypatch.setattr(runner, "model_costs", lambda profile: {"input": [3, 8, 8], "models": {}})
    monkeypatch.setattr(runner, "write_reports", lambda *a: None)
    assert compare("--profile", "cpu-small-nested64", "--in-process", "--results-dir", str(tmp_path / "results"),
                   "--output-root", str(tmp_path / "out")) == 0
    assert calls == [("nested", 0), ("nested", 1), ("nested", 2)]


def test_diameter_errors_and_failed_estimates():
    images = [{"height": 256, "width": 256, "gt_diameter": 20.0, "diameter": 22.0},
              {"height": 256, "width": 256, "gt_diameter": 10.0, "diameter": 9.0},
              {"height": 1024, "width": 1024, "gt_diameter": 12.0, "diameter": 15.0}]
    run = fake_run("fpn", 0, 70.0, 0.4, per_image=images)
    assert metrics.diameter_errors(run) == pytest.approx([0.1, 0.1, 0.25])
    assert metrics.failed_estimates_percent(run) == 0.0
    assert report.scale_section([run], ["fpn"]) == []  # no oracle metrics: not a diameter-policy run

    def image(diameter):
        return {"gt_diameter": 20.0, "diameter": diameter}

    assert not metrics.estimate_failed(image(30.0))  # exactly 1.5x: held
    assert metrics.estimate_failed(image(30.1)) and metrics.estimate_failed(image(13.0))  # 13: 1.54x too small
    assert not metrics.estimate_failed({"gt_diameter": 20.0})  # no estimate: not a failure


def test_the_pair_is_compared_where_neither_model_s_estimate_failed():
    def image(image_id, diameter, fg_iou, dsb_map):
        return {"image_id": image_id, "gt_diameter": 20.0, "diameter": diameter, "fg_iou": fg_iou, "dsb_map": dsb_map}

    runs = []
    for seed, offset in ((0, 0.0), (1, 2.0)):
        # image 2: the nested estimate fails (8 px for 20); image 3: the FPN one (45 for 20)
        fpn = [image(1, 21.0, 70.0 + offset, 0.50), image(2, 20.0, 80.0, 0.60), image(3, 45.0, 10.0, 0.0)]
        nested = [image(1, 19.0, 71.0, 0.52), image(2, 8.0, 20.0, 0.0), image(3, 21.0, 85.0, 0.7)]
        runs += [fake_run("fpn", seed, 60.0, 0.4, per_image=fpn), fake_run("nested", seed, 60.0, 0.4, per_image=nested)]
    held = metrics.paired_where_estimates_hold(runs)
    assert held["seeds"] == [0, 1] and held["images"] == [1, 1]  # image 1 only
    assert held["fg_iou"] == pytest.approx([1.0, -1.0]) and held["dsb_map"] == pytest.approx([0.02, 0.02])
    assert metrics.failed_estimates_percent(runs[0]) == pytest.approx(100 / 3)


def test_a_screen_has_a_row_per_profile_and_model_and_names_those_not_run(tmp_path):
    screen = ("screen", {"title": "A screen", "profiles": ("val-image-size", "val-diameter-17")})
    image = {"height": 1024, "width": 1024, "fg_iou": 55.0}
    write_runs(tmp_path / "nuclei_runs" / "val-image-size",
               [fake_run("fpn", seed, fg, 0.4, per_image=[image]) for seed, fg in enumerate((70.0, 72.0))])
    rows = summaries.screen_rows("val-image-size", PROFILES["val-image-size"],
                                 [fake_run("fpn", seed, fg, 0.4, per_image=[image]) for seed, fg in enumerate((70.0, 72.0))])
    (row,) = rows
    assert row[:4] == ["`val-image-size`", "Mask R-CNN (FPN)", 2, "71.00 ± 1.41"]
    assert row[6:8] == ["55.00", "–"]  # the 1024 x 1024 group, and no 360 x 360 image
    text = summaries.render_screen(screen, str(tmp_path))
    assert (tmp_path / "screen.md").read_text() == text
    assert "Not run yet: val-diameter-17." in text


def test_a_profile_with_a_baseline_shows_its_groups_beside_the_baseline_s():
    images = [{"height": 1024, "width": 1024, "modality": "grey", "fg_iou": 8.0, "dsb_map": 0.05},
              {"height": 256, "width": 256, "modality": "colour", "fg_iou": 70.0, "dsb_map": 0.4}]
    scaled = [dict(images[0], fg_iou=64.0, dsb_map=0.3), dict(images[1], fg_iou=71.0)]
    old = [fake_run(m, 0, 39.0, 0.225, per_image=images) for m in ("fpn", "nested")]
    new = [fake_run(m, 0, 67.5, 0.35, per_image=scaled) for m in ("fpn", "nested")]
    lines = report.baseline_section(new, "cpu-small", old, ["fpn", "nested"])
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert rows["| all"].startswith("| all | 2 | 39.00 → 67.50 | 0.225 → 0.350 |")
    assert rows["| size 1024×1024"].startswith("| size 1024×1024 | 1 | 8.00 → 64.00 | 0.050 → 0.300 |")
    assert report.baseline_section(new, "cpu-small", [], ["fpn"]) == []


def test_a_fine_tuning_run_starts_from_its_source_profile_s_model_of_the_same_seed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "model_costs", fake_costs)
    out = str(tmp_path / "out")
    cfg = runner.build_cfg(PROFILES["finetune-colour"], "fpn", 2, runner.run_output_dir(out, "finetune-colour", "fpn", 2), out)[0]
    assert cfg.MODEL.WEIGHTS == os.path.join(out, "finetune-grey", "fpn_seed2", "model_final.pth")
    assert cfg.DATASETS.TRAIN == ("dsb2018_train_colour",) and cfg.SOLVER.MAX_ITER == 200
    grey = runner.build_cfg(PROFILES["finetune-grey"], "fpn", 2, str(tmp_path))[0]
    assert grey.DATASETS.TRAIN == ("dsb2018_train_grey",) and grey.DATASETS.TEST == cfg.DATASETS.TEST
    # before the grey model exists: one line naming what to run first, exit 2
    with pytest.raises(SystemExit) as exit_info:
        compare("--profile", "finetune-colour", "--model", "fpn", "--seeds", "2", "--results-dir",
                str(tmp_path / "results"), "--output-root", out)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: finetune-colour fpn seed 2 starts from") and "--profile finetune-grey" in err


def test_the_fine_tuning_table_scores_colour_images_and_pairs_seeds(tmp_path):
    colour = {"height": 256, "width": 320, "modality": "colour"}
    grey = {"height": 256, "width": 256, "modality": "grey", "fg_iou": 99.0, "dsb_map": 0.9}
    assert metrics.colour_means(fake_run("fpn", 0, 0, 0, per_image=[dict(colour, fg_iou=40.0, dsb_map=0.2), grey])) \
        == (40.0, 0.2)  # the grey image left out
    results = tmp_path / "results"
    for profile, base in (("finetune-grey", 40.0), ("finetune-colour", 60.0), ("cpu-scale", 55.0)):
        runs = [fake_run("fpn", s, 0.0, 0.0, per_image=[dict(colour, fg_iou=base + s, dsb_map=base / 200), grey])
                for s in (0, 1, 2)]
        write_runs(results / "nuclei_runs" / profile, runs + [fake_run("nested", 0, 0.0, 0.0, per_image=[
            dict(colour, fg_iou=1.0, dsb_map=0.0)])])
    text = summaries.render_fine_tuning(("fine_tuning_colour", FINE_TUNING["fine_tuning_colour"]), str(results))
    assert "- fg IoU: +20.00 (seed 0 +20.00, seed 1 +20.00, seed 2 +20.00); beyond the seed spread 1.00" in text
    assert (results / "fine_tuning_colour.md").read_text() == text


def test_the_zoo_fine_tuning_arms_differ_only_in_their_start_and_learning_rate(tmp_path):
    zoo, scratch = (runner.build_cfg(PROFILES[f"own10-{arm}"], "nested", 1, str(tmp_path))[0] for arm in ("zoo", "scratch"))
    assert zoo.MODEL.WEIGHTS == "maskrcnnpp://R18_NestedFPN_dsb2018" and scratch.MODEL.WEIGHTS == ""
    assert (zoo.SOLVER.BASE_LR, scratch.SOLVER.BASE_LR) == (0.005, 0.01)
    assert zoo.DATASETS.TRAIN == scratch.DATASETS.TRAIN == ("colour10_train",)
    assert zoo.SOLVER.MAX_ITER == scratch.SOLVER.MAX_ITER == 200 and zoo.SEED == scratch.SEED == 1
    assert zoo.DATASETS.TEST == ("dsb2018_test_colour",)


def test_the_zoo_fine_tuning_table_pairs_each_size_s_arms_by_seed(tmp_path):
    colour = {"height": 256, "width": 320, "modality": "colour"}
    results = tmp_path / "results"
    for profile, base in (("own10-scratch", 20.0), ("own10-zoo", 70.0), ("own30-scratch", 40.0)):
        write_runs(results / "nuclei_runs" / profile, [
            fake_run("nested", s, 0.0, 0.0, per_image=[dict(colour, fg_iou=base + (s if "zoo" in profile else 0),
                                                            dsb_map=base / 100)]) for s in (0, 1, 2)])
    text = summaries.render_fine_tuning(("fine_tuning_zoo", FINE_TUNING["fine_tuning_zoo"]), str(results))
    assert "- fg IoU: +51.00 (seed 0 +50.00, seed 1 +51.00, seed 2 +52.00)" in text
    assert "30 images, zoo − scratch" not in text  # no zoo runs of 30 images yet: no pair
    assert "| 30 images, from the zoo model | `own30-zoo` | none yet |" in text
    write_runs(results / "nuclei_runs" / "own30-zoo", [fake_run("nested", 0, 0.0, 0.0, per_image=[
        dict(colour, fg_iou=65.0, dsb_map=0.3)])])
    text = summaries.render_fine_tuning(("fine_tuning_zoo", FINE_TUNING["fine_tuning_zoo"]), str(results))
    assert "30 images, zoo − scratch, paired by seed (1 pair):" in text
    assert "- fg IoU: +25.00 (seed 0 +25.00); one pair: no spread to judge it by" in text


def committed_runs(model):
    runs_dir = os.path.join(REPO, "benchmarks", "results", "nuclei_runs")
    for profile in sorted(os.listdir(runs_dir)):
        for name in sorted(os.listdir(os.path.join(runs_dir, profile))):
            if name.startswith(f"{model}_seed") and name.endswith(".json"):
                with open(os.path.join(runs_dir, profile, name)) as f:
                    yield profile, json.load(f)


def test_every_profile_still_builds_the_nested_fpn_its_committed_runs_trained(tmp_path):
    import yaml

    runs = list(committed_runs("nested"))
    assert len(runs) >= 20
    for profile, run in runs:
        cfg, _ = runner.build_cfg(PROFILES[profile], "nested", run["seed"], str(tmp_path))
        recorded = yaml.safe_load(run["config_yaml"])["MODEL"]["NESTED_FPN"]
        built = {key: cfg.MODEL.NESTED_FPN[key] for key in recorded}
        assert built == recorded, (profile, run["seed"])


def test_evaluation_goes_through_trainer_test_timing_the_forward_and_keeping_the_diameters(tmp_path):
    # An untrained model at the annotated diameters (no estimate passes), on the 4 sample val images.
    cfg, _ = runner.build_cfg(PROFILES["cpu-scale"], "fpn", 0, str(tmp_path))
    cfg.defrost()
    cfg.merge_from_list(["DATASETS.TEST", "('dsb2018_sample_val',)", "TEST.DIAMETER_SOURCE", "ground_truth",
                         "TEST.DETECTIONS_PER_IMAGE", "5", "DATALOADER.NUM_WORKERS", "0"])
    cfg.freeze()
    torch.manual_seed(0)
    results, timer = runner.evaluate(cfg, runner.Trainer.build_model(cfg), "dsb2018_sample_val")
    assert results["nuclei"]["num_images"] == 4 and "segm" in results
    assert timer.images == 4 - runner.WARMUP_BATCHES and timer.timing()["cpu_s_per_image"] > 0
    assert timer.first_image.dim() == 3
    assert len(timer.diameters) == 4 and {source for _, source in timer.diameters.values()} == {"given"}
    records = runner.per_image_records(str(tmp_path), "dsb2018_sample_val", timer.diameters)
    assert all(r["diameter"] == r["gt_diameter"] for r in records)


def write_start_method(path):
    with open(path, "w") as f:
        f.write(multiprocessing.get_start_method())


def test_a_run_s_fresh_process_starts_its_dataloader_workers_as_its_parent_would(tmp_path):
    # spawned workers would unpickle Detectron2's objects before maskrcnnpp's guards exist
    assert runner.run_in_fresh_process(str(tmp_path / "method"), target=write_start_method) == 0
    assert (tmp_path / "method").read_text() == multiprocessing.get_start_method()
