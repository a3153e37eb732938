#!/usr/bin/env python
"""Train and evaluate U-Net, wide U-Net and UNet++ (deep supervision) on the nuclei foreground.

    DETECTRON2_DATASETS=datasets OMP_NUM_THREADS=1 python benchmarks/semantic_comparison.py --seeds 0 1 2

Each row is one config (configs/nuclei/*_cpu.yaml, which differ only in the
model) trained from scratch with the repository's Trainer, with a fixed SEED
per run, then evaluated on DATASETS.TEST (dsb2018_test, 201 images) with
NucleiEvaluator: foreground IoU and Dice of the probability map thresholded at
0.5. Trailing KEY VALUE pairs override every row alike (e.g. SOLVER.MAX_ITER
300). One JSON per (row, seed) goes to benchmarks/results/semantic_nuclei_cpu/
(``<row>_seed<k>.json``); finished runs are skipped, and the markdown table
(mean ± std over seeds, and the UNet++ − U-Net difference paired by seed) is
rebuilt from all of them, so rows and seeds may be run a few at a time
(--rows, --seeds). The single random-seed runs of before (``<row>.json``) are
listed apart.
"""
import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import time

import torch

from repo_path import REPO  # this checkout's maskrcnnpp first on sys.path
from measure import command_text, cpu_model  # noqa: E402
from comparison_report import fmt, mean_std, seed_spread  # noqa: E402
import maskrcnnpp  # noqa: E402,F401  (registers datasets and the meta-architecture)

from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from maskrcnnpp.engine import Trainer  # noqa: E402
from maskrcnnpp.engine.setup import load_cfg  # noqa: E402
from maskrcnnpp.utils.json_io import atomic_write, write_json_atomic  # noqa: E402

ROWS = {
    "unet": ("U-Net", "configs/nuclei/unet_cpu.yaml"),
    "wide_unet": ("wide U-Net", "configs/nuclei/wide_unet_cpu.yaml"),
    "unetpp_ds": ("UNet++ (deep supervision, ensemble)", "configs/nuclei/unetpp_ds_cpu.yaml"),
}
RESULTS = os.path.join(REPO, "benchmarks", "results")
RUNS = os.path.join(RESULTS, "semantic_nuclei_cpu")


def run_path(runs_dir, key, seed):
    return os.path.join(runs_dir, f"{key}_seed{seed}.json")


def run_row(key, seed, opts, output_root, threads, command, runs_dir=RUNS):
    name, config = ROWS[key]
    opts = list(opts) + ["SEED", str(seed), "OUTPUT_DIR", os.path.join(output_root, f"{key}_seed{seed}")]
    cfg = load_cfg(os.path.join(REPO, config), opts)
    test_sets = cfg.DATASETS.TEST
    cfg.DATASETS.TEST = ()  # evaluate after training, timed on its own
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())

    seed_all_rng(seed)  # the same data order and patches for every row of one seed
    torch.manual_seed(seed)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    last_losses = {
        k: trainer.storage.history(k).median(20)
        for k in ("total_loss", "loss_bce", "loss_dice")
        if k in trainer.storage.histories()
    }

    eval_cfg = cfg.clone()
    eval_cfg.defrost()
    eval_cfg.DATASETS.TEST = test_sets
    eval_cfg.freeze()
    start = time.perf_counter()
    results = Trainer.test(eval_cfg, trainer.model)
    eval_seconds = time.perf_counter() - start
    # DefaultTrainer.test unwraps the results of a single test set.
    nuclei = results["nuclei"] if len(test_sets) == 1 else results
    record = {
        "row": key,
        "seed": seed,
        "model": name,
        "config": config,
        "overrides": list(opts),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "iterations": cfg.SOLVER.MAX_ITER,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "test_sets": list(test_sets),
        "metrics": nuclei,
        "final_losses_median20": last_losses,
        "threads": threads,
        "command": command,
        "settings": settings_of(cfg),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_json_atomic(run_path(runs_dir, key, seed), record, indent=2)
    return record


def settings_of(cfg) -> dict:
    u, s = cfg.MODEL.UNETPP, cfg.SOLVER
    return {
        "train_set": list(cfg.DATASETS.TRAIN),
        "patch": u.PATCH_SIZE,
        "flips": "horizontal + vertical" if cfg.INPUT.VERTICAL_FLIP else cfg.INPUT.RANDOM_FLIP,
        "batch": s.IMS_PER_BATCH,
        "optimizer": s.OPTIMIZER,
        "base_lr": s.BASE_LR,
        "warmup_iters": s.WARMUP_ITERS,
        "steps": list(s.STEPS),
        "max_iter": s.MAX_ITER,
        "weight_decay": s.WEIGHT_DECAY,
        "norm": u.NORM or "none",
        "loss": f"{u.LOSS.BCE_WEIGHT} BCE + {u.LOSS.DICE_WEIGHT} (1 - soft Dice), mean over heads",
        "window": u.SLIDING_WINDOW.SIZE or "whole image",
        "window_overlap": u.SLIDING_WINDOW.OVERLAP,
        "inference": u.INFERENCE,
    }


def load_runs(runs_dir):
    """({row: {seed: run}}, [single random-seed runs of before]) from the JSONs in ``runs_dir``."""
    seeded, single = {}, []
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(runs_dir, name)) as f:
            run = json.load(f)
        if "seed" in run:
            seeded.setdefault(run["row"], {})[run["seed"]] = run
        else:
            single.append(run)
    return seeded, single


def seed_stat(rs, get, decimals=2):
    """"mean ± std" of ``get(run)`` over the runs ``rs``."""
    return fmt(*mean_std([get(r) for r in rs]), decimals=decimals)


def score_cells(rs):
    """The fg IoU | fg Dice | pooled IoU | eval s/image cells, mean ± std over the runs ``rs``."""
    return " | ".join(seed_stat(rs, get) for get in (
        lambda r: r["metrics"]["fg_iou"], lambda r: r["metrics"]["fg_dice"], lambda r: r["metrics"]["fg_iou_pooled"],
        lambda r: r["eval_seconds"] / (r["metrics"].get("num_images") or 1)))


def seeded_table(seeded):
    lines = ["| model | params | seeds | iterations | train time (min) | s/iter | fg IoU | fg Dice "
             "| pooled IoU | eval s/image |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in ROWS:
        runs = seeded.get(key)
        if not runs:
            continue
        rs = [runs[s] for s in sorted(runs)]
        first = rs[0]
        lines.append(
            f"| {first['model']} | {first['parameters'] / 1e6:.2f}M | {', '.join(str(s) for s in sorted(runs))} "
            f"| {first['iterations']} | {seed_stat(rs, lambda r: r['train_seconds'] / 60, 1)} "
            f"| {seed_stat(rs, lambda r: r['train_seconds'] / r['iterations'])} | {score_cells(rs)} |"
        )
    return lines


def paired_lines(seeded, key, base="unet"):
    """``key`` − ``base`` fg IoU paired by seed, and whether it is beyond the seed spread."""
    return paired_line(seeded.get(key, {}), seeded.get(base, {}), ROWS[key][0], ROWS[base][0])


def paired_line(a, b, name_a, name_b):
    """``name_a`` − ``name_b`` fg IoU paired by seed, from their {seed: run}; [] without a common seed."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return []
    diffs = [a[s]["metrics"]["fg_iou"] - b[s]["metrics"]["fg_iou"] for s in seeds]
    spread = seed_spread(diffs, *([r[s]["metrics"]["fg_iou"] for s in seeds] for r in (a, b)))
    mean = statistics.fmean(diffs)
    per_seed = ", ".join(f"seed {s} {d:+.2f}" for s, d in zip(seeds, diffs))
    if len(seeds) < 2:
        judged = "one seed: too few to compare with the seed spread"
    else:
        judged = f"{'beyond' if abs(mean) > spread else 'within'} the seed spread {spread:.2f}"
    return [f"- {name_a} − {name_b}, fg IoU paired by seed: {mean:+.2f} ({per_seed}); {judged}"]


def write_report(results_dir=RESULTS):
    runs_dir = os.path.join(results_dir, "semantic_nuclei_cpu")
    seeded, single = load_runs(runs_dir)
    everything = [r for runs in seeded.values() for r in runs.values()] + single
    lines = [
        "# Semantic nuclei segmentation on CPU: U-Net vs wide U-Net vs UNet++",
        "",
        "Foreground IoU / Dice (percent) of the probability map >= 0.5 against the union of "
        "the ground-truth nuclei, mean over test images (the paper's headline) and pooled over "
        "all pixels. Test: `dsb2018_test` is the paper-sized split's 201 test images "
        "(335/134/201); every model trained from scratch on `dsb2018_train` (335 images).",
        "",
    ]
    if seeded:
        lines += ["Mean ± std over seeds (a fixed `SEED` per run: the same data order and patches for "
                  "every row of one seed):", ""] + seeded_table(seeded) + [""]
        lines += paired_lines(seeded, "unetpp_ds") + paired_lines(seeded, "wide_unet")
        lines += paired_lines(seeded, "unetpp_ds", base="wide_unet")
    else:
        lines += ["No seeded runs yet (`--seeds 0 1 2`)."]
    if single:
        lines += ["", "Earlier single runs, each with a random seed (not comparable beyond their spread):", "",
                  "| model | iterations | train time (min) | fg IoU | fg Dice |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['iterations']} | {r['train_seconds'] / 60:.1f} | "
                  f"{r['metrics']['fg_iou']:.2f} | {r['metrics']['fg_dice']:.2f} |" for r in single]
    if everything:
        first = everything[0]
        same = all(r["settings"] == first["settings"] for r in everything)
        lines += [
            "",
            "Test set(s): " + ", ".join(sorted({f"{r['test_sets']} ({r['metrics'].get('num_images')} images)"
                                                for r in everything})) + ".",
            "Every row trains for the same iterations (the same number of patches), not the same "
            "time: UNet++'s full-resolution nodes make each of its iterations slower.",
            "Settings, the same for every row" + ("" if same else " (NOT identical: see the JSONs)")
            + ": " + ", ".join(f"{k} = {v}" for k, v in first["settings"].items()) + ".",
            f"Threads: {first['threads']} (torch.set_num_threads and OMP_NUM_THREADS) on a "
            "2-core machine shared with other jobs, so times are indicative only.",
            "Per-run JSON (metrics, losses, timings): `benchmarks/results/semantic_nuclei_cpu/*.json`.",
        ]
    lines += [
        "",
        "Context: the paper trained to convergence on a GPU (Adam 3e-4, early stopping) and "
        "reports UNet++ ahead of U-Net by about 1.7-1.9 IoU points on nuclei; a CPU schedule of "
        "minutes shows which models train, not their converged ranking.",
        "",
        *sorted({f"- command: `{r['command']}`" for r in everything}),
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}",
        "",
    ]
    path = os.path.join(results_dir, "semantic_nuclei_cpu.md")
    with atomic_write(path, encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one run per row and seed (SEED k); finished runs are skipped")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output-root", default=os.path.join(REPO, "output", "semantic_comparison")
    )
    parser.add_argument("--results-dir", default=RESULTS)
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the table from the JSONs"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = command_text("benchmarks/semantic_comparison.py", argv)
    runs_dir = os.path.join(args.results_dir, "semantic_nuclei_cpu")
    if not args.report_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        for seed in args.seeds:  # seed by seed: every row of a seed before the next seed
            for key in args.rows:
                if os.path.isfile(run_path(runs_dir, key, seed)):
                    logging.getLogger("maskrcnnpp").info("semantic comparison: %s seed %d done, skipped", key, seed)
                    continue
                logging.getLogger("maskrcnnpp").info("semantic comparison: training %s seed %d", key, seed)
                run_row(key, seed, args.opts, args.output_root, args.threads, command, runs_dir)
                write_report(args.results_dir)
    write_report(args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
