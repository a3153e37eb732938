"""tools/compare.py: aggregation over seeds, paired differences, resume, report files.

Training is mocked by hand-made run JSONs; a real smoke run is
`python tools/compare.py --profile smoke --results-dir /tmp/r --output-root /tmp/o`.
"""
import json
import math
import os

import pytest

import comparison_report  # benchmarks/, on sys.path through pytest.ini
import nuclei_comparison
from comparison_profiles import MODELS, PROFILES

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
        "command": "python tools/compare.py --profile smoke", "git_commit": "abc",
        "machine": "test CPU", "loadavg_at_end": [3.0, 2.0, 1.0], "date": "2026-01-01 00:00 UTC",
    }


def write_runs(runs_dir, runs):
    for r in runs:
        nuclei_comparison.write_json_atomic(
            nuclei_comparison.run_path(str(runs_dir), r["model"], r["seed"]), r)


def test_mean_std_and_paired_differences():
    runs = [fake_run("fpn", 0, 70.0, 0.40), fake_run("fpn", 1, 72.0, 0.44),
            fake_run("fpn", 2, 74.0, 0.42),
            fake_run("nested", 0, 71.0, 0.45), fake_run("nested", 1, 75.0, 0.47)]
    table = comparison_report.aggregate(runs)
    mean, std, n = table["fpn"]["fg_iou"]
    assert (mean, n) == (72.0, 3) and std == pytest.approx(2.0)  # sample std of 70, 72, 74
    mean, std, n = table["nested"]["dsb_map"]
    assert mean == pytest.approx(0.46) and std == pytest.approx(math.sqrt(2) * 0.01) and n == 2
    assert table["nested"]["segm_ap50"] == (None, None, 0)  # NaN from COCO is no value

    paired = comparison_report.paired_differences(runs)
    assert paired["fg_iou"]["seeds"] == [0, 1]  # seed 2 has no nested run
    assert paired["fg_iou"]["diffs"] == pytest.approx([1.0, 3.0])
    assert paired["fg_iou"]["mean"] == pytest.approx(2.0)
    assert paired["fg_iou"]["std"] == pytest.approx(math.sqrt(2))
    assert paired["dsb_map"]["diffs"] == pytest.approx([0.05, 0.03])


def test_verdict_compares_the_paired_difference_with_the_seed_spread():
    clear = [fake_run("fpn", s, 70.0 + 0.1 * s, 0.40) for s in range(3)]
    clear += [fake_run("nested", s, 75.0 + 0.1 * s, 0.40 + 0.01 * s) for s in range(3)]
    table, paired = comparison_report.aggregate(clear), comparison_report.paired_differences(clear)
    assert comparison_report.verdict(table, paired, "fg_iou").startswith("yes")
    assert comparison_report.verdict(table, paired, "dsb_map").startswith("no")

    one_pair = [fake_run("fpn", 0, 70.0, 0.4), fake_run("nested", 0, 90.0, 0.9)]
    table, paired = comparison_report.aggregate(one_pair), comparison_report.paired_differences(one_pair)
    assert comparison_report.verdict(table, paired, "fg_iou").startswith("too few")


def test_breakdown_groups_images_by_modality_and_size():
    images = [{"height": 256, "width": 256, "modality": "grey", "fg_iou": 80.0, "dsb_map": 0.5},
              {"height": 256, "width": 256, "modality": "grey", "fg_iou": 60.0, "dsb_map": 0.3},
              {"height": 520, "width": 696, "modality": "colour", "fg_iou": 40.0, "dsb_map": 0.1}]
    better = [dict(i, fg_iou=i["fg_iou"] + 5) for i in images]
    runs = [fake_run("fpn", 0, 0, 0, per_image=images), fake_run("nested", 0, 0, 0, per_image=better)]
    rows = comparison_report.breakdown(runs, lambda i: i["modality"])
    assert [(r["group"], r["images"]) for r in rows] == [("grey", 2), ("colour", 1)]
    assert rows[0][("fpn", "fg_iou")] == pytest.approx(70.0)
    assert rows[0][("diff", "fg_iou")] == pytest.approx(5.0)
    sizes = comparison_report.breakdown(runs, comparison_report.size_group)
    assert sizes[1]["group"] == "520×696" and sizes[1][("nested", "dsb_map")] == pytest.approx(0.1)


def test_train_timing_sums_the_segments_of_a_resumed_run(tmp_path):
    first = {"start_iter": 0, "end_iter": 200, "wall_s": 400.0, "cpu_s": 300.0}
    nuclei_comparison.train_timing(str(tmp_path), first)
    # A resumed process trains 200..600; one that found the run finished trains nothing.
    nuclei_comparison.train_timing(str(tmp_path), {"start_iter": 200, "end_iter": 600,
                                                   "wall_s": 1200.0, "cpu_s": 500.0})
    timing = nuclei_comparison.train_timing(str(tmp_path), {"start_iter": 600, "end_iter": 600,
                                                            "wall_s": 1.0, "cpu_s": 1.0})
    assert timing["iterations_timed"] == 600 and len(timing["segments"]) == 2
    assert timing["wall_s_per_iter"] == pytest.approx(1600.0 / 600)
    assert timing["cpu_s_per_iter"] == pytest.approx(800.0 / 600)


def test_resume_skips_finished_runs_and_renders_the_report(tmp_path, monkeypatch):
    results = tmp_path / "results"
    runs_dir = results / "nuclei_runs" / "smoke"
    write_runs(runs_dir, [fake_run("fpn", 0, 70.0, 0.40)])
    calls = []

    def fake_run_one(profile, model, seed, runs_dir_arg, output_root, command):
        calls.append((model, seed))
        assert runs_dir_arg == str(runs_dir)
        write_runs(runs_dir, [fake_run(model, seed, 71.0 + seed + (model == "nested"), 0.41)])

    monkeypatch.setattr(nuclei_comparison, "run_one", fake_run_one)
    monkeypatch.setattr(nuclei_comparison, "model_costs", lambda profile: {
        "input": [3, 128, 128], "models": {
            "fpn": {"parameters": 10_000_000, "gflops_whole": 20.0,
                    "gflops_backbone_and_neck": 2.0, "detections": 400},
            "nested": {"parameters": 10_500_000, "gflops_whole": 19.0,
                       "gflops_backbone_and_neck": 1.5, "detections": 400}}})
    argv = ["--profile", "smoke", "--in-process", "--results-dir", str(results),
            "--output-root", str(tmp_path / "out")]
    assert nuclei_comparison.main(argv) == 0
    assert calls == [("nested", 0), ("fpn", 1), ("nested", 1)]  # paired seeds first

    calls.clear()
    assert nuclei_comparison.main(argv) == 0
    assert calls == []  # everything finished: nothing retrained

    md = (results / "nuclei_instance_smoke.md").read_text()
    assert "| Mask R-CNN (FPN) | 2 | 71.00 ± 1.41 |" in md  # 70 and 72
    assert "| Mask R-CNN++ (nested FPN) | 2 | 72.50 ± 0.71 |" in md  # 72 and 73
    assert "| 2 pairs | +1.50 ± 0.71 |" in md
    # Size-only costs come from costs.json (written once), not from the runs.
    assert (runs_dir / "costs.json").is_file()
    assert "| 10.00 | 2.0 | 20.0 |" in md and "| 10.50 | 1.5 | 19.0 |" in md
    assert "| +5.0 % | -25.0 % | -5.0 % |" in md
    assert "400 / 400 (FPN / nested) detections" in md
    assert "fg IoU (%): seed 0: +2.00, seed 1: +1.00" in md
    assert "--profile smoke" in md and "test CPU" in md
    with open(results / "nuclei_instance_smoke.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (results / "nuclei_instance_smoke.png").stat().st_size > 10_000


def test_render_only_with_no_runs_says_so(tmp_path):
    assert nuclei_comparison.main(["--profile", "cpu-small", "--render-only",
                                   "--results-dir", str(tmp_path)]) == 0
    assert "No finished runs yet." in (tmp_path / "nuclei_instance_cpu-small.md").read_text()
    assert not (tmp_path / "nuclei_instance_cpu-small.png").exists()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_build_configs_that_differ_only_in_the_backbone(name, tmp_path):
    profile = PROFILES[name]
    cfgs = {m: nuclei_comparison.build_cfg(profile, m, 3, str(tmp_path))[0] for m in ("fpn", "nested")}
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
    if name == "cpu-small":  # reproducible as committed: the policy of before issue 13
        assert cfgs["fpn"].SOLVER.MAX_ITER == 600 and len(profile.seeds) >= 3
        assert cfgs["fpn"].DATASETS.TEST == ("dsb2018_test",)
        assert cfgs["fpn"].INPUT.SCALE_POLICY == "image_size" and cfgs["fpn"].INPUT.MIN_SIZE_TRAIN == (256,)
    if name == "cpu-scale":  # cpu-small's schedule and data under the configs' default policy
        small = nuclei_comparison.build_cfg(PROFILES["cpu-small"], "fpn", 3, str(tmp_path))[0]
        assert cfgs["fpn"].INPUT.SCALE_POLICY == "diameter" and profile.baseline == "cpu-small"
        assert cfgs["fpn"].SOLVER == small.SOLVER and cfgs["fpn"].DATASETS == small.DATASETS
        assert len(profile.seeds) >= 3
    if name == "cpu-small-nested64":  # an ablation of the nested model only: FPN is cpu-small's
        assert cfgs["nested"].MODEL.NESTED_FPN.NODE_CHANNELS == [64, 64, 128, 128]
        baseline = nuclei_comparison.build_cfg(PROFILES["cpu-small"], "fpn", 3,
                                               str(tmp_path))[0]
        assert cfgs["fpn"].dump() == baseline.dump()
    if name in ("val-nested-gn4", "val-nested-faithful", "val-nested64-gn4"):  # neck ablations beside val-diameter-17's FPN
        assert profile.fpn_runs_from == "val-diameter-17"
        assert cfgs["nested"].SOLVER == nuclei_comparison.build_cfg(
            PROFILES["val-diameter-17"], "nested", 3, str(tmp_path))[0].SOLVER
    if name == "val-nested-gn4":
        assert cfgs["nested"].MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP == 4
    if name == "val-nested64-gn4":
        assert cfgs["nested"].MODEL.NESTED_FPN.NODE_CHANNELS == [64, 64, 128, 128]
        assert cfgs["nested"].MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP == 4
    if name == "val-nested-faithful":
        assert cfgs["nested"].MODEL.NESTED_FPN.NODE_CHANNELS == [128] * 4
        assert cfgs["nested"].MODEL.NESTED_FPN.BLOCK == "double_conv"
    if name == "smoke":
        assert cfgs["fpn"].DATASETS.TRAIN == ("dsb2018_sample_train",)
        assert cfgs["fpn"].INPUT.MIN_SIZE_TEST == 128


def test_a_run_locked_by_another_process_is_skipped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(nuclei_comparison, "ensure_costs", lambda *a: None)
    monkeypatch.setattr(nuclei_comparison, "run_one", lambda p, m, s, *a: calls.append((m, s)))
    out = tmp_path / "out"
    held = nuclei_comparison.run_lock(nuclei_comparison.run_output_dir(str(out), "smoke", "nested", 0))
    with pytest.raises(nuclei_comparison.OutputDirInUse):
        nuclei_comparison.run_lock(nuclei_comparison.run_output_dir(str(out), "smoke", "nested", 0))
    argv = ["--profile", "smoke", "--seeds", "0", "--in-process", "--results-dir",
            str(tmp_path / "results"), "--output-root", str(out)]
    nuclei_comparison.main(argv)
    assert calls == [("fpn", 0)]
    held.close()
    calls.clear()
    nuclei_comparison.main(argv)
    assert calls == [("fpn", 0), ("nested", 0)]  # no JSONs were written, so both are pending


def test_model_costs_match_the_committed_costs_scaled_to_the_test_size():
    # smoke runs cpu-small's configs (only data and schedule differ) at 128 px instead of 256 px.
    costs = nuclei_comparison.model_costs(PROFILES["smoke"])
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


def test_object_size_section_pairs_coco_ap_by_nucleus_size():
    runs = []
    for seed, (fpn_small, nested_small) in enumerate([(20.0, 23.0), (22.0, 24.0)]):
        for model, small in (("fpn", fpn_small), ("nested", nested_small)):
            run = fake_run(model, seed, 70.0, 0.4)
            run["metrics"]["segm"].update({"APs": small, "APm": 40.0, "APl": None})
            runs.append(run)
    rows = {line.split(" | ")[0]: line for line in comparison_report.object_size_section(runs, ["fpn", "nested"])}
    assert "21.00 ± 1.41" in rows["| small: area < 32² px"]
    assert rows["| small: area < 32² px"].endswith("| +2.50 ± 0.71 |")
    assert rows["| medium: 32²–96² px"].endswith("| +0.00 ± 0.00 |")
    assert rows["| large: > 96² px"].count("–") == 3  # no large nuclei: empty, not NaN or zero


def test_the_report_names_runs_that_were_resumed_from_a_checkpoint():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    runs[1]["train_timing"].update(iterations_timed=2)  # fpn seed 1 was killed and resumed
    runs[2]["train_timing"].update(iterations_timed=5)
    profile = PROFILES["smoke"]
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    resumed = [line for line in text.splitlines() if line.startswith("- resumed")]
    assert len(resumed) == 1
    assert resumed[0].endswith("Mask R-CNN (FPN) seed 1 (2 iterations timed)")


def test_the_report_says_when_the_models_were_timed_on_different_cpus():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    profile = PROFILES["smoke"]
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    assert "- machine: test CPU" in text and "different CPUs" not in text

    def paired_cost_cells(text):
        row = next(line for line in text.splitlines() if line.startswith("| nested − FPN"))
        return row.strip("| ").split(" | ")[-7:]

    assert all(cell.endswith(" %") for cell in paired_cost_cells(text))
    runs[3]["machine"] = "Other CPU, 2 logical cores"
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    assert "- machine, Mask R-CNN (FPN): test CPU\n" in text
    assert "- machine, Mask R-CNN++ (nested FPN): Other CPU, 2 logical cores; test CPU\n" in text
    assert "timed on different CPUs" in text
    # Size figures still compare; measured times across machines do not.
    cells = paired_cost_cells(text)
    assert all(cell.endswith(" %") for cell in cells[:3]) and cells[3:] == ["different CPUs"] * 4


def test_the_report_lists_each_run_s_iterations_when_a_time_budget_made_them_differ():
    runs = [fake_run(m, s, 70.0, 0.4) for m in ("fpn", "nested") for s in (0, 1)]
    profile = PROFILES["smoke"]
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    assert f"- iterations per run: {runs[0]['max_iter']}, batch" in text
    for run, iterations in zip(runs, (1580, 1621, 1460, 1569)):
        run["max_iter"] = iterations
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    assert ("- iterations per run: Mask R-CNN (FPN) 1580, 1621; Mask R-CNN++ (nested FPN) 1460, 1569, batch"
            in text)


def test_seeds_added_beyond_the_profile_are_aggregated_and_listed():
    runs = [fake_run(m, s, 70.0 + s, 0.4) for m in ("fpn", "nested") for s in (0, 1, 5)]
    profile = PROFILES["smoke"]
    assert 5 not in profile.seeds
    text = comparison_report.render_markdown("smoke", profile, runs, "python tools/compare.py --profile smoke")
    assert "| Mask R-CNN (FPN) | 3 | 72.00 ± 2.65 |" in text
    assert "finished runs per model: Mask R-CNN (FPN) 3 (seeds 0, 1, 5)" in text


def test_an_ablation_profile_pairs_its_nested_runs_with_the_shared_fpn_runs(tmp_path):
    results = tmp_path / "results"
    write_runs(results / "nuclei_runs" / "cpu-small",
               [fake_run("fpn", s, 70.0, 0.40) for s in (0, 1)] + [fake_run("nested", 0, 10.0, 0.1)])
    write_runs(results / "nuclei_runs" / "cpu-small-nested64",
               [fake_run("nested", 0, 71.0, 0.42), fake_run("nested", 1, 73.0, 0.42)])
    argv = ["--profile", "cpu-small-nested64", "--render-only", "--results-dir", str(results)]
    assert nuclei_comparison.main(argv) == 0
    text = (results / "nuclei_instance_cpu-small-nested64.md").read_text()
    assert "| 2 pairs | +2.00 ± 1.41 |" in text  # its own nested runs against cpu-small's FPN runs
    assert "10.00" not in text  # cpu-small's nested run is not mixed in


def test_an_ablation_profile_trains_only_its_nested_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(nuclei_comparison, "run_one", lambda profile, model, seed, *a: calls.append((model, seed)))
    monkeypatch.setattr(nuclei_comparison, "model_costs", lambda profile: {"input": [3, 8, 8], "models": {}})
    argv = ["--profile", "cpu-small-nested64", "--in-process", "--results-dir", str(tmp_path / "results"),
            "--output-root", str(tmp_path / "out")]
    assert nuclei_comparison.main(argv) == 0
    assert calls == [("nested", 0), ("nested", 1), ("nested", 2)]


def test_scale_section_sets_the_estimate_beside_the_oracle_and_gives_the_diameter_error():
    images = [{"height": 256, "width": 256, "gt_diameter": 20.0, "diameter": 22.0},
              {"height": 256, "width": 256, "gt_diameter": 10.0, "diameter": 9.0},
              {"height": 1024, "width": 1024, "gt_diameter": 12.0, "diameter": 15.0}]
    runs = []
    for seed, (fg, oracle) in enumerate([(70.0, 74.0), (72.0, 76.0)]):
        run = fake_run("fpn", seed, fg, 0.4, per_image=images)
        run["oracle_scale_metrics"] = {"fg_iou": oracle, "dsb_map": 0.45}
        runs.append(run)
    text = "\n".join(comparison_report.scale_section(runs, ["fpn"]))
    # errors 10 %, 10 %, 25 %: median 10 %; by size 10 % (256 x 256) and 25 % (1024 x 1024)
    # no estimate is off by more than 1.5x: 0 % failed
    assert ("| Mask R-CNN (FPN) | 2 | 71.00 ± 1.41 | 75.00 ± 1.41 | 0.400 ± 0.000 | 0.450 ± 0.000 "
            "| 10.00 ± 0.00 | 0.0 ± 0.0 |") in text
    assert "- 256×256: 10.0 (4 images)" in text and "- 1024×1024: 25.0 (2 images)" in text
    assert "Where neither model" not in text  # one model: nothing to pair
    assert comparison_report.scale_section([fake_run("fpn", 0, 70.0, 0.4)], ["fpn"]) == []


def test_failed_estimates_are_counted_and_the_pair_is_compared_where_neither_model_failed():
    def image(image_id, diameter, fg_iou, dsb_map, gt=20.0):
        return {"image_id": image_id, "height": 256, "width": 256, "gt_diameter": gt,
                "diameter": diameter, "fg_iou": fg_iou, "dsb_map": dsb_map}

    assert not comparison_report.estimate_failed(image(0, 30.0, 0, 0))  # exactly 1.5x: held
    assert comparison_report.estimate_failed(image(0, 30.1, 0, 0))
    assert comparison_report.estimate_failed(image(0, 13.0, 0, 0))  # 1.54x too small
    assert not comparison_report.estimate_failed({"gt_diameter": 20.0})  # no estimate: not a failure
    runs = []
    for seed, offset in ((0, 0.0), (1, 2.0)):
        # image 2: the nested estimate fails (8 px for 20); image 3: the FPN one (45 for 20)
        fpn = [image(1, 21.0, 70.0 + offset, 0.50), image(2, 20.0, 80.0, 0.60), image(3, 45.0, 10.0, 0.0)]
        nested = [image(1, 19.0, 71.0, 0.52), image(2, 8.0, 20.0, 0.0), image(3, 21.0, 85.0, 0.7)]
        for model, images in (("fpn", fpn), ("nested", nested)):
            run = fake_run(model, seed, 60.0, 0.4, per_image=images)
            run["oracle_scale_metrics"] = {"fg_iou": 75.0, "dsb_map": 0.45}
            runs.append(run)
    held = comparison_report.paired_where_estimates_hold(runs)
    assert held["seeds"] == [0, 1] and held["images"] == [1, 1]  # image 1 only
    assert held["fg_iou"] == pytest.approx([1.0, -1.0]) and held["dsb_map"] == pytest.approx([0.02, 0.02])
    assert comparison_report.failed_estimates_percent(runs[0]) == pytest.approx(100 / 3)
    text = "\n".join(comparison_report.scale_section(runs, ["fpn", "nested"]))
    rows = [line for line in text.splitlines() if line.startswith("| Mask R-CNN")]
    assert len(rows) == 2 and all(row.endswith("| 33.3 ± 0.0 |") for row in rows)  # one of three, both seeds
    assert ("Where neither model's estimate is off by more than 1.5x (1 of the 3 images per seed; seeds 0, 1), "
            "nested − FPN over those images: fg IoU +0.00 ± 1.41 (+1.00, -1.00); "
            "DSB mAP +0.020 ± 0.000 (+0.020, +0.020).") in text


def test_a_screen_table_has_a_row_per_profile_and_model_and_names_those_not_run(tmp_path):
    screen = {"title": "A screen", "profiles": ("val-image-size", "val-diameter-17")}
    image = {"height": 1024, "width": 1024, "fg_iou": 55.0}
    for seed, fg in enumerate((70.0, 72.0)):
        run = fake_run("fpn", seed, fg, 0.4, per_image=[image])
        run["inference_timing"]["cpu_s_per_image"] = 0.5
        folder = tmp_path / "nuclei_runs" / "val-image-size"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"fpn_seed{seed}.json").write_text(json.dumps(run))
    text = comparison_report.render_screen("screen", screen, PROFILES, str(tmp_path))
    assert (tmp_path / "screen.md").read_text() == text
    row = [line for line in text.splitlines() if line.startswith("| `val-image-size` |")]
    assert len(row) == 1 and "| Mask R-CNN (FPN) | 2 | 71.00 ± 1.41 | 0.400 ± 0.000 |" in row[0]
    assert "| 55.00 | – |" in row[0]  # the 1024 x 1024 group, and no 360 x 360 image
    assert "| 16.00 | 1.0 |" in row[0]  # parameters (M) and backbone+neck GFLOPs
    assert "Not run yet: val-diameter-17." in text


def test_a_profile_with_a_baseline_shows_its_groups_beside_the_baseline_s(tmp_path):
    images = [{"height": 1024, "width": 1024, "modality": "grey", "fg_iou": 8.0, "dsb_map": 0.05},
              {"height": 256, "width": 256, "modality": "colour", "fg_iou": 70.0, "dsb_map": 0.4}]
    scaled = [dict(images[0], fg_iou=64.0, dsb_map=0.3), dict(images[1], fg_iou=71.0)]
    results = tmp_path / "results"
    write_runs(results / "nuclei_runs" / "cpu-small",
               [fake_run(m, 0, 39.0, 0.225, per_image=images) for m in ("fpn", "nested")])
    new_runs = [fake_run(m, 0, 67.5, 0.35, per_image=scaled) for m in ("fpn", "nested")]
    for r in new_runs:
        r["inference_timing"]["cpu_s_per_image"] = 0.9
    write_runs(results / "nuclei_runs" / "cpu-scale", new_runs)
    argv = ["--profile", "cpu-scale", "--render-only", "--results-dir", str(results)]
    assert nuclei_comparison.main(argv) == 0
    text = (results / "nuclei_instance_cpu-scale.md").read_text()
    assert "## Beside `cpu-small`" in text
    assert "| all | 2 | 39.00 → 67.50 | 0.225 → 0.350 |" in text
    assert "| size 1024×1024 | 1 | 8.00 → 64.00 | 0.050 → 0.300 |" in text
    assert "| modality colour | 1 | 70.00 → 71.00 |" in text
    assert "Mask R-CNN (FPN) 0.30 → 0.90" in text


def test_a_fine_tuning_run_starts_from_its_source_profile_s_model_of_the_same_seed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nuclei_comparison, "ensure_costs", lambda *a: None)
    profile = PROFILES["finetune-colour"]
    out = str(tmp_path / "out")
    cfg = nuclei_comparison.build_cfg(profile, "fpn", 2, nuclei_comparison.run_output_dir(
        out, "finetune-colour", "fpn", 2), out)[0]
    assert cfg.MODEL.WEIGHTS == os.path.join(out, "finetune-grey", "fpn_seed2", "model_final.pth")
    assert cfg.DATASETS.TRAIN == ("dsb2018_train_colour",) and cfg.SOLVER.MAX_ITER == 200
    grey = nuclei_comparison.build_cfg(PROFILES["finetune-grey"], "fpn", 2, str(tmp_path))[0]
    assert grey.DATASETS.TRAIN == ("dsb2018_train_grey",) and grey.DATASETS.TEST == cfg.DATASETS.TEST
    # before the grey model exists: one line naming what to run first, exit 2
    argv = ["--profile", "finetune-colour", "--model", "fpn", "--seed", "2", "--results-dir",
            str(tmp_path / "results"), "--output-root", out]
    with pytest.raises(SystemExit) as exit_info:
        nuclei_comparison.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: finetune-colour fpn seed 2 starts from") and "--profile finetune-grey" in err


def test_the_fine_tuning_table_scores_colour_images_and_pairs_seeds(tmp_path):
    colour = {"height": 256, "width": 320, "modality": "colour"}
    grey = {"height": 256, "width": 256, "modality": "grey", "fg_iou": 99.0, "dsb_map": 0.9}
    results = tmp_path / "results"
    for profile, base in (("finetune-grey", 40.0), ("finetune-colour", 60.0), ("cpu-scale", 55.0)):
        runs = [fake_run("fpn", s, 0.0, 0.0, per_image=[dict(colour, fg_iou=base + s, dsb_map=base / 200), grey])
                for s in (0, 1, 2)]
        write_runs(results / "nuclei_runs" / profile, runs + [fake_run("nested", 0, 0.0, 0.0, per_image=[
            dict(colour, fg_iou=1.0, dsb_map=0.0)])])
    from comparison_profiles import FINE_TUNING

    text = comparison_report.render_fine_tuning(FINE_TUNING, str(results))
    assert "| trained on grey images only, 600 iterations | `finetune-grey` | 0, 1, 2 | 41.00 ± 1.00 | 0.200 ± 0.000 |" in text
    assert "| `cpu-scale` | 0, 1, 2 | 56.00 ± 1.00 |" in text  # its colour images only, FPN only
    assert "- fg IoU: +20.00 (seed 0 +20.00, seed 1 +20.00, seed 2 +20.00); beyond the seed spread 1.00" in text
    assert (results / "fine_tuning_colour.md").read_text() == text


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
        cfg, _ = nuclei_comparison.build_cfg(PROFILES[profile], "nested", run["seed"], str(tmp_path))
        recorded = yaml.safe_load(run["config_yaml"])["MODEL"]["NESTED_FPN"]
        built = {key: cfg.MODEL.NESTED_FPN[key] for key in recorded}
        assert built == recorded, (profile, run["seed"])
