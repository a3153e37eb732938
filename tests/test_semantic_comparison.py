"""The semantic job: one run per (row, seed), skipped once finished, and the differences paired
by seed against the spread. Training is replaced by hand-made run records."""
import json
import os

from benchmarks.__main__ import main
from benchmarks.records import semantic_run_path
from benchmarks.semantic import comparison as semantic_comparison

SETTINGS = {"patch": 96, "max_iter": 450}


def fake_record(key, seed, fg_iou):
    return {"row": key, "seed": seed, "model": semantic_comparison.ROWS[key][0], "config": "c.yaml",
            "overrides": [], "parameters": 7_760_000, "iterations": 450, "train_seconds": 390.0 + seed,
            "eval_seconds": 40.2, "test_sets": ["dsb2018_test"],
            "metrics": {"fg_iou": fg_iou, "fg_dice": fg_iou + 10, "fg_iou_pooled": fg_iou - 1, "num_images": 201},
            "threads": 1, "command": "python -m benchmarks semantic --seeds 0 1",
            "settings": SETTINGS, "date": "2026-01-01 00:00 UTC"}


def test_seeds_run_every_row_once_and_the_table_pairs_them(tmp_path, monkeypatch):
    calls = []
    scores = {("unet", 0): 66.0, ("unet", 1): 68.0, ("unetpp_ds", 0): 70.0, ("unetpp_ds", 1): 73.0}

    def fake_run_row(key, seed, opts, output_root, threads, command, runs_dir):
        calls.append((key, seed, tuple(opts)))
        os.makedirs(runs_dir, exist_ok=True)
        with open(semantic_run_path(runs_dir, key, seed), "w") as f:
            json.dump(fake_record(key, seed, scores[(key, seed)]), f)

    monkeypatch.setattr(semantic_comparison, "run_row", fake_run_row)
    monkeypatch.setattr(semantic_comparison, "setup_logger", lambda **kw: None)
    argv = ["semantic", "--rows", "unet", "unetpp_ds", "--seeds", "0", "1", "--results-dir", str(tmp_path),
            "SOLVER.MAX_ITER", "450"]
    assert main(argv) == 0
    assert calls == [("unet", 0, ("SOLVER.MAX_ITER", "450")), ("unetpp_ds", 0, ("SOLVER.MAX_ITER", "450")),
                     ("unet", 1, ("SOLVER.MAX_ITER", "450")), ("unetpp_ds", 1, ("SOLVER.MAX_ITER", "450"))]
    assert main(argv) == 0 and len(calls) == 4  # finished runs are skipped
    text = (tmp_path / "semantic_nuclei_cpu.md").read_text()
    assert "| U-Net | 7.76M | 0, 1 | 450 | 6.5 ± 0.0 | 0.87 ± 0.00 | 67.00 ± 1.41 |" in text
    assert "| 71.50 ± 2.12 |" in text
    assert ("UNet++ (deep supervision, ensemble) − U-Net, fg IoU paired by seed: +4.50 "
            "(seed 0 +4.00, seed 1 +5.00); beyond the seed spread 2.12") in text


def test_runs_of_before_without_a_seed_are_listed_apart(tmp_path):
    runs_dir = tmp_path / "semantic_nuclei_cpu"
    runs_dir.mkdir()
    old = fake_record("wide_unet", 0, 62.84)
    del old["seed"]
    (runs_dir / "wide_unet.json").write_text(json.dumps(old))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "No seeded runs yet" in text
    assert "| wide U-Net | 450 | 6.5 | 62.84 | 72.84 |" in text


def test_a_single_seed_is_not_judged_against_a_spread(tmp_path):
    runs_dir = tmp_path / "semantic_nuclei_cpu"
    runs_dir.mkdir()
    for key, fg in (("unet", 62.0), ("unetpp_ds", 70.0)):
        (runs_dir / f"{key}_seed0.json").write_text(json.dumps(fake_record(key, 0, fg)))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "+8.00 (seed 0 +8.00); one seed: too few to compare with the seed spread" in text
    assert "beyond the seed spread" not in text
