"""The semantic job: one run per (row, seed), skipped once finished, and the differences paired
by seed against the spread. Training is replaced by hand-made run records."""
import json
import os

from benchmarks.__main__ import main
from benchmarks.measure import REPO
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

    def fake_run_row(key, seed, opts, output_root, threads, command, runs_dir, test_set, windows):
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
    text = (tmp_path / f"{semantic_comparison.REPORT}.md").read_text()
    assert "| U-Net | 7.76M | 0, 1 | 450 | 6.5 ± 0.0 | 0.87 ± 0.00 | 67.00 ± 1.41 |" in text
    assert "| 71.50 ± 2.12 |" in text
    assert ("UNet++ (deep supervision, ensemble) − U-Net, fg IoU paired by seed: +4.50 "
            "(seed 0 +4.00, seed 1 +5.00); beyond the seed spread 2.12") in text


def test_each_report_trains_in_its_own_output_folder(tmp_path, monkeypatch):
    roots = []

    def fake_run_row(key, seed, opts, output_root, threads, command, runs_dir, test_set, windows):
        roots.append(output_root)
        os.makedirs(runs_dir, exist_ok=True)
        with open(semantic_run_path(runs_dir, key, seed), "w") as f:
            json.dump(fake_record(key, seed, 60.0), f)

    monkeypatch.setattr(semantic_comparison, "run_row", fake_run_row)
    monkeypatch.setattr(semantic_comparison, "setup_logger", lambda **kw: None)
    common = ["semantic", "--rows", "unet", "--seeds", "0", "--results-dir", str(tmp_path)]
    assert main(common) == 0
    assert main(common + ["--report", "other"]) == 0
    assert main(common + ["--report", "third", "--output-root", str(tmp_path / "mine")]) == 0
    assert roots == [os.path.join(REPO, "output", semantic_comparison.REPORT), os.path.join(REPO, "output", "other"),
                     str(tmp_path / "mine")]


def test_the_report_shows_each_run_s_val_curve_and_how_much_its_end_still_moved(tmp_path):
    runs_dir = tmp_path / semantic_comparison.REPORT
    runs_dir.mkdir()
    curves = {"unet": [[500, 70.0], [1000, 75.0], [1500, 76.0], [2000, 76.5]], "unetpp_ds": [[500, 71.0], [1000, 74.0]]}
    for key, curve in curves.items():
        record = dict(fake_record(key, 0, 80.0), val_curve=curve,
                      best={"metric": "nuclei/fg_iou", "value": max(v for _, v in curve), "iteration": curve[-1][0] - 1})
        (runs_dir / f"{key}_seed0.json").write_text(json.dumps(record))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "| model | seed | 500 | 1000 | 1500 | 2000 | last change |" in text
    assert "| U-Net | 0 | 70.00 | 75.00 | 76.00 | 76.50 | +0.50 |" in text
    assert "| UNet++ (deep supervision, ensemble) | 0 | 71.00 | 74.00 |  |  | +3.00 |" in text
    assert "scored with its best val checkpoint" in text and "shows which models train" not in text


def test_runs_of_before_without_a_seed_are_listed_apart(tmp_path):
    runs_dir = tmp_path / semantic_comparison.REPORT
    runs_dir.mkdir()
    old = fake_record("wide_unet", 0, 62.84)
    del old["seed"]
    (runs_dir / "wide_unet.json").write_text(json.dumps(old))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "No seeded runs yet" in text
    assert "| wide U-Net | 450 | 6.5 | 62.84 | 72.84 |" in text


def test_a_single_seed_is_not_judged_against_a_spread(tmp_path):
    runs_dir = tmp_path / semantic_comparison.REPORT
    runs_dir.mkdir()
    for key, fg in (("unet", 62.0), ("unetpp_ds", 70.0)):
        (runs_dir / f"{key}_seed0.json").write_text(json.dumps(fake_record(key, 0, fg)))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "+8.00 (seed 0 +8.00); one seed: too few to compare with the seed spread" in text
    assert "beyond the seed spread" not in text


def test_runs_on_different_thread_counts_are_named_so_their_times_are_not_compared(tmp_path):
    runs_dir = tmp_path / semantic_comparison.REPORT
    runs_dir.mkdir()
    for key, threads in (("unet", 1), ("wide_unet", 2)):
        (runs_dir / f"{key}_seed0.json").write_text(json.dumps(dict(fake_record(key, 0, 80.0), threads=threads)))
    text = semantic_comparison.write_report(str(tmp_path))
    assert "per run, 1: U-Net; 2: wide U-Net," in text and "do not compare" in text
    (runs_dir / "wide_unet_seed0.json").unlink()
    assert "Threads: 1 (torch.set_num_threads" in semantic_comparison.write_report(str(tmp_path))


def tiny_row(tmp_path, name, num_images, max_iter, base_lr, *extra):
    """KEY VALUE overrides for a row trained a few iterations on synthetic nuclei registered as
    ``name`` (train and val alike), evaluated on them every 20 iterations, best kept by fg IoU."""
    from maskrcnnpp.data import synthetic
    from test_trainer import SMALL_FILTERS, register

    register(name, synthetic.make_dataset(str(tmp_path / "img"), num_images=num_images, size=(64, 80)),
             evaluator_type="nuclei")
    return ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)", "MODEL.UNETPP.FILTERS", str(SMALL_FILTERS),
            "MODEL.UNETPP.PATCH_SIZE", "48", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter),
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "SOLVER.BASE_LR", base_lr, "SOLVER.CHECKPOINT_PERIOD", "20",
            "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "20", "TEST.BEST_METRIC", "nuclei/fg_iou", *extra]


def test_a_run_is_scored_with_the_weights_chosen_on_val_and_resumes_without_training_again(repo_root, tmp_path):
    name = "synthetic_semantic_row"
    opts = tiny_row(tmp_path, name, 4, 60, "0.003")
    runs_dir = semantic_comparison.runs_dir_of(str(tmp_path))
    record = semantic_comparison.run_row("unet", 0, opts, str(tmp_path / "out"), 1, "cmd", runs_dir,
                                         test_set=name, windows=True)
    curve = dict(record["val_curve"])
    assert sorted(curve) == [20, 40, 60] and record["iterations"] == 60
    assert record["best"]["value"] == max(curve.values())
    # Val and test are the same images here: the score is the chosen checkpoint's, not the last one's.
    assert record["metrics"]["fg_iou"] == record["best"]["value"]
    assert record["metrics"]["num_images"] == 4 and record["windows"]["metrics"]["num_images"] == 4
    assert record["windows"]["metrics"]["fg_iou"] != record["metrics"]["fg_iou"]
    assert [(s["start_iter"], s["end_iter"]) for s in record["train_segments"]] == [(0, 60)]
    again = semantic_comparison.run_row("unet", 0, opts, str(tmp_path / "out"), 1, "cmd", runs_dir, test_set=name)
    assert len(again["train_segments"]) == 1 and again["metrics"] == record["metrics"]
    text = semantic_comparison.write_report(str(tmp_path))
    assert "| best val fg IoU | best after (iterations) |" in text


def test_the_gpu_table_script_runs_the_table_in_one_command(repo_root, tmp_path):
    """gpu_table.sh with a tiny schedule on the CPU: every row and seed trained, chosen on val and
    scored both ways, one report and one archive of the run records in OUT."""
    import subprocess
    import sys
    import tarfile

    out = tmp_path / "out"
    env = dict(os.environ, DEVICE="cpu", SEEDS="0 1", TEST_SET="dsb2018_sample_val", PY=sys.executable,
               SEMANTIC_OUTPUT_ROOT=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    tiny = ["DATASETS.TRAIN", "('dsb2018_sample_train',)", "DATASETS.TEST", "('dsb2018_sample_val',)",
            "MODEL.UNETPP.FILTERS", "[4, 8, 8, 16, 16]", "MODEL.UNETPP.PATCH_SIZE", "48", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "2",
            "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "2", "TEST.BEST_METRIC", "nuclei/fg_iou"]
    done = subprocess.run(["bash", os.path.join(repo_root, "benchmarks", "semantic", "gpu_table.sh"), str(out), *tiny],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr + "".join(p.read_text()[-2000:] for p in out.glob("seed*.log"))
    with tarfile.open(out / "semantic_nuclei_gpu_runs.tar.gz") as archive:
        names = sorted(os.path.basename(n) for n in archive.getnames() if n.endswith(".json"))
        records = [json.load(archive.extractfile(m)) for m in archive.getmembers() if m.name.endswith(".json")]
    assert names == sorted(f"{row}_seed{seed}.json" for row in semantic_comparison.ROWS for seed in (0, 1))
    assert all(r["best"] and r["windows"]["metrics"]["num_images"] == 4 and r["device"] == "cpu" for r in records)
    report = (out / "semantic_nuclei_gpu.md").read_text()
    assert "| U-Net |" in report and "| UNet++ (deep supervision, ensemble) |" in report
    assert "fg IoU, sliding windows" in report


def test_a_run_stopped_early_counts_the_iterations_it_trained_and_is_not_evaluated_again(repo_root, tmp_path):
    name = "synthetic_semantic_patience"
    # A learning rate too small to change the scores: the second evaluation is no better, so a
    # patience of one ends training there.
    opts = tiny_row(tmp_path, name, 3, 100, "1e-12", "TEST.PATIENCE", "1")
    runs_dir = semantic_comparison.runs_dir_of(str(tmp_path))
    record = semantic_comparison.run_row("unet", 0, opts, str(tmp_path / "out"), 1, "cmd", runs_dir, test_set=name)
    assert record["iterations"] == 40 and [i for i, _ in record["val_curve"]] == [20, 40]
    assert record["best"]["iteration"] == 19 and record["final_losses_median20"]
    again = semantic_comparison.run_row("unet", 0, opts, str(tmp_path / "out"), 1, "cmd", runs_dir, test_set=name)
    assert again["iterations"] == 40 and again["val_curve"] == record["val_curve"]
    assert again["train_segments"] == record["train_segments"] and again["metrics"] == record["metrics"]
    assert again["final_losses_median20"] == record["final_losses_median20"]
