"""The final table (benchmarks.nuclei.summaries) and training for a wall-clock budget
(benchmarks.nuclei.budget)."""
import dataclasses
import json
import os

import pytest
import yaml

from benchmarks.nuclei import budget as train_budget
from benchmarks.nuclei import runner, summaries
from benchmarks.nuclei.profiles import FINAL, PROFILES, STARDIST
from maskrcnnpp.engine.setup import load_cfg
from test_compare import REPO, committed_runs, fake_run, write_runs

SPEC = dict(FINAL, rows=(("equal iterations", "pair"), ("equal wall-clock", "budget")), pair="pair")


def timed_run(model, seed, fg_iou, dsb_map, wall_per_iter=2.0, infer_cpu=0.3):
    run = fake_run(model, seed, fg_iou, dsb_map)
    run["train_timing"] = {"wall_s_per_iter": wall_per_iter, "cpu_s_per_iter": 1.5, "wall_s": 600 * wall_per_iter}
    run["inference_timing"]["cpu_s_per_image"] = infer_cpu
    return run


def test_final_table_has_every_row_the_peer_and_the_decision(tmp_path):
    runs = tmp_path / "nuclei_runs"
    # nested wins fg IoU by 2 with every seed (spread ~0.8) but loses DSB mAP; 5 % slower to train
    write_runs(runs / "pair", [timed_run("fpn", s, 72.0 + (s % 2), 0.40) for s in range(3)]
               + [timed_run("nested", s, 74.0 + (s % 2), 0.39, wall_per_iter=2.1, infer_cpu=0.36)
                  for s in range(3)])
    write_runs(runs / "budget", [timed_run("nested", 0, 73.5, 0.385)])
    text = summaries.render_final(SPEC, str(tmp_path))
    assert (tmp_path / SPEC["file"]).read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| equal")]
    assert len(rows) == 3  # both models of the pair, the one budget run
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1  # header, separator and rows line up
    assert "| `pair` | 0, 1, 2 | 72.33 ± 0.58 |" in rows[0]
    assert "| 20.0 |" in rows[0]  # 600 iterations x 2 s = 20 minutes of training
    assert f"| {STARDIST['label']} | StarDist 2D |" in text and "| 72.57 | 83.37 | 0.380 |" in text
    assert "fg IoU (%), nested − FPN: seed 0 +2.00, seed 1 +2.00, seed 2 +2.00; beats by more than the " \
           "spread? yes" in text
    assert "DSB mAP, nested − FPN: seed 0 -0.010" in text and "spread? no" in text
    assert "training wall s/iter: nested +5.0 % vs FPN (2.10 vs 2.00); within the goal of +10 %" in text
    assert "inference CPU s/img: nested +20.0 % vs FPN (0.36 vs 0.30); over the goal of +5 %" in text
    # pair nested 74.33 / 84.33 / 0.390 vs 72.57 / 83.37 / 0.380: beats the peer on all three
    assert "- equal iterations, Mask R-CNN++ (nested FPN): fg IoU (%) +1.76" in text
    assert "equal wall-clock, Mask R-CNN++ (nested FPN): fg IoU (%) +0.93, fg Dice (%) +0.13, DSB mAP " \
           "+0.005 vs StarDist 2D; beats it on all three" in text
    assert "equal iterations, Mask R-CNN (FPN): fg IoU (%) -0.24" in text and "does not beat it" in text


def test_times_from_different_cpus_are_not_compared_against_the_goals(tmp_path):
    runs = [timed_run("fpn", s, 72.0, 0.40) for s in range(2)] + [timed_run("nested", s, 73.0, 0.40) for s in range(2)]
    runs[3]["machine"] = "Other CPU, 2 logical cores, torch 2.0, 1 threads"
    write_runs(tmp_path / "nuclei_runs" / "pair", runs)
    text = summaries.render_final(SPEC, str(tmp_path))
    assert "within the goal" not in text and "over the goal" not in text
    assert ("training and inference time: not comparable here, the FPN runs were timed on test CPU and "
            "the nested runs on Other CPU + test CPU") in text


def test_a_row_that_shares_another_profile_s_fpn_runs_is_paired_with_them(tmp_path):
    runs = tmp_path / "nuclei_runs"
    # the pair's own folder holds only nested runs; its FPN runs (and a stray FPN run) live elsewhere
    write_runs(runs / "pair", [timed_run("nested", s, 74.0, 0.41) for s in range(2)]
               + [timed_run("fpn", 0, 10.0, 0.1)])
    write_runs(runs / "shared", [timed_run("fpn", s, 72.0, 0.40) for s in range(3)])
    profiles = {"pair": dataclasses.replace(PROFILES["cpu-final"], fpn_runs_from="shared"),
                "budget": PROFILES["cpu-23min"]}
    text = summaries.render_final(SPEC, str(tmp_path), profiles)
    fpn_row = next(line for line in text.splitlines() if line.startswith("| equal iterations | Mask R-CNN (FPN)"))
    assert "| `pair` | 0, 1, 2 | 72.00 ± 0.00 |" in fpn_row  # the shared runs, not the stray one
    assert "fg IoU (%), nested − FPN: seed 0 +2.00, seed 1 +2.00;" in text


def test_a_budget_row_lists_each_seed_s_iterations(tmp_path):
    runs = tmp_path / "nuclei_runs"
    write_runs(runs / "pair", [timed_run(m, s, 72.0, 0.40) for m in ("fpn", "nested") for s in range(2)])
    budget = [timed_run(m, s, 77.0, 0.44) for m in ("fpn", "nested") for s in range(2)]
    for run, iterations in zip(budget, (1580, 1621, 1460, 1460)):  # each seed's probe set its own length
        run["max_iter"] = iterations
    write_runs(runs / "budget", budget)
    profiles = {"pair": PROFILES["cpu-final"], "budget": PROFILES["cpu-23min"]}
    text = summaries.render_final(SPEC, str(tmp_path), profiles)
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| equal wall-clock")}
    assert "| 1580, 1621 |" in rows["Mask R-CNN (FPN)"]
    assert "| 1460 |" in rows["Mask R-CNN++ (nested FPN)"]


def test_the_shipped_nested_config_is_the_one_the_final_comparison_trained(tmp_path):
    # The README's command trains the shipped config: it must build the nested FPN that the
    # committed runs of the final comparison and of the variant chosen on val were trained with.
    shipped = load_cfg(os.path.join(REPO, PROFILES["cpu-final"].configs["nested"]))
    trained = {(profile, run["seed"]): yaml.safe_load(run["config_yaml"])["MODEL"]["NESTED_FPN"]
               for profile, run in committed_runs("nested") if profile in ("cpu-final", "val-nested-gn4")}
    assert len(trained) >= 5
    for key, recorded in trained.items():
        assert {k: shipped.MODEL.NESTED_FPN[k] for k in recorded} == recorded, key


def test_final_table_without_runs_says_so(tmp_path):
    text = summaries.render_final(SPEC, str(tmp_path))
    assert "not both models run yet" in text and "StarDist 2D" in text
    assert "Not run yet: equal iterations, `pair`; equal wall-clock, `budget`." in text


def test_final_spec_names_real_profiles_and_the_budget_is_the_peer_s():
    for _, profile in FINAL["rows"]:
        assert profile in PROFILES
    assert FINAL["pair"] in (p for _, p in FINAL["rows"])
    budget_rows = [p for _, p in FINAL["rows"] if PROFILES[p].train_minutes]
    assert budget_rows and all(PROFILES[p].train_minutes == FINAL["peer"]["train_min"] for p in budget_rows)


def test_the_cost_goals_are_judged_at_the_spec_s_limits():
    runs = [fake_run("fpn", 0, 72.0, 0.4), fake_run("nested", 0, 72.0, 0.4)]
    runs[1]["train_timing"] = dict(runs[1]["train_timing"], wall_s_per_iter=2.2)  # +10 %
    runs[1]["inference_timing"] = dict(runs[1]["inference_timing"], cpu_s_per_image=0.33)  # +10 %
    lines = summaries.final_cost_lines(runs, dict(FINAL, max_extra_train=0.11, max_extra_inference=0.09))
    assert "within the goal of +11 %" in lines[0] and "over the goal of +9 %" in lines[1]


def r18_cfg(*opts):
    return load_cfg(os.path.join(REPO, "configs/nuclei/mask_rcnn_R_18_FPN_cpu.yaml"), list(opts))


def test_budget_schedule_keeps_the_steps_fractions():
    cfg = r18_cfg()  # 600 iterations, steps at 450 and 550, 100 warm-up
    schedule = train_budget.budget_schedule(cfg, 23.0, 0.75)
    assert schedule == {"max_iter": 1840, "steps": [1380, 1687], "warmup_iters": 100}
    assert train_budget.budget_schedule(cfg, 1.0, 1.0)["warmup_iters"] == 15  # a quarter of 60


def test_budget_is_probed_once_and_kept_for_a_resumed_run(tmp_path):
    calls = []

    def probe(cfg, output_dir):
        calls.append(output_dir)
        return 2.0

    cfg = r18_cfg()
    cfg.defrost()
    budget = train_budget.apply_training_budget(cfg, 10.0, str(tmp_path), probe=probe)
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (300, (225, 275)) and budget["minutes"] == 10.0
    assert json.loads((tmp_path / "train_budget.json").read_text()) == budget
    again = r18_cfg()
    again.defrost()
    train_budget.apply_training_budget(again, 10.0, str(tmp_path), probe=lambda *a: 99.0)
    assert again.SOLVER.MAX_ITER == 300 and len(calls) == 1


def test_probe_times_real_iterations_of_the_run_s_config(tmp_path):
    cfg, _ = runner.build_cfg(PROFILES["smoke"], "nested", 0, str(tmp_path / "run"))
    seconds = train_budget.probe_seconds_per_iter(cfg, str(tmp_path / "probe"), warmup=1, iters=2)
    assert 0 < seconds < 60
    assert cfg.SOLVER.MAX_ITER == 5  # the run's own config is left as it was
    assert not (tmp_path / "probe").exists()  # nor its checkpoint


@pytest.mark.parametrize("name", ["cpu-23min"])
def test_budget_profile_trains_the_configs_as_they_are(name, tmp_path):
    cfg, _ = runner.build_cfg(PROFILES[name], "fpn", 0, str(tmp_path))
    base = r18_cfg()
    assert cfg.INPUT == base.INPUT and cfg.DATASETS.TEST == ("dsb2018_test",)
