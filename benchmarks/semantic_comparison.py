#!/usr/bin/env python
"""Train and evaluate U-Net, wide U-Net and UNet++ (deep supervision) on the nuclei foreground.

    DETECTRON2_DATASETS=datasets OMP_NUM_THREADS=1 python benchmarks/semantic_comparison.py

Each row is one config (configs/nuclei/*_cpu.yaml, which differ only in the
model) trained from scratch with the repository's Trainer, then evaluated on
DATASETS.TEST (dsb2018_test, 201 images) with NucleiEvaluator: foreground IoU
and Dice of the probability map thresholded at 0.5. Trailing KEY VALUE pairs
override every row alike (e.g. SOLVER.MAX_ITER 300). One JSON per run goes to
benchmarks/results/semantic_nuclei_cpu/, and the markdown table is rebuilt from
all of them, so rows may be run one at a time (--rows).
"""
import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import time

import torch

from repo_path import REPO  # this checkout's maskrcnnpp first on sys.path
from measure import cpu_model  # noqa: E402
import maskrcnnpp  # noqa: E402,F401  (registers datasets and the meta-architecture)

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


def run_row(key, opts, output_root, threads, command):
    name, config = ROWS[key]
    opts = list(opts) + ["OUTPUT_DIR", os.path.join(output_root, key)]
    cfg = load_cfg(os.path.join(REPO, config), opts)
    test_sets = cfg.DATASETS.TEST
    cfg.DATASETS.TEST = ()  # evaluate after training, timed on its own
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())

    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
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
    write_json_atomic(os.path.join(RUNS, f"{key}.json"), record, indent=2)
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


def write_report():
    runs = {}
    for key in ROWS:
        path = os.path.join(RUNS, f"{key}.json")
        if os.path.isfile(path):
            with open(path) as f:
                runs[key] = json.load(f)
    lines = [
        "# Semantic nuclei segmentation on CPU: U-Net vs wide U-Net vs UNet++",
        "",
        "Foreground IoU / Dice (percent) of the probability map >= 0.5 against the union of "
        "the ground-truth nuclei, mean over test images (the paper's headline) and pooled over "
        "all pixels. Test: `dsb2018_test` is the paper-sized split's 201 test images "
        "(335/134/201); every model trained from scratch on `dsb2018_train` (335 images).",
        "",
        "| model | params | iterations | train time | s/iter | fg IoU | fg Dice "
        "| pooled IoU | pooled Dice | eval s/image |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs.values():
        m = r["metrics"]
        n = m.get("num_images", 1) or 1
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.2f}M | {r['iterations']} "
            f"| {r['train_seconds'] / 60:.1f} min | {r['train_seconds'] / r['iterations']:.2f} "
            f"| {m['fg_iou']:.2f} | {m['fg_dice']:.2f} | {m['fg_iou_pooled']:.2f} "
            f"| {m['fg_dice_pooled']:.2f} | {r['eval_seconds'] / n:.2f} |"
        )
    missing = [ROWS[k][0] for k in ROWS if k not in runs]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    if runs:
        first = next(iter(runs.values()))
        same = all(r["settings"] == first["settings"] for r in runs.values())
        lines += [
            "",
            "Test set(s): "
            + ", ".join(
                sorted(
                    {
                        f"{r['test_sets']} ({r['metrics'].get('num_images')} images)"
                        for r in runs.values()
                    }
                )
            )
            + ".",
            "Every row trains for the same iterations (the same number of patches), not the same "
            "time: UNet++'s full-resolution nodes make each of its iterations slower.",
            "Settings, the same for every row" + ("" if same else " (NOT identical: see the JSONs)")
            + ": " + ", ".join(f"{k} = {v}" for k, v in first["settings"].items()) + ".",
            f"Threads: {first['threads']} (torch.set_num_threads and OMP_NUM_THREADS) on a "
            "2-core machine shared with other jobs, so times are indicative only.",
            "Per-run JSON (metrics, losses, timings): "
            "`benchmarks/results/semantic_nuclei_cpu/*.json`.",
        ]
    lines += [
        "",
        "Context: the paper trained to convergence on a GPU (Adam 3e-4, early stopping) and "
        "reports UNet++ ahead of U-Net by about 1.7-1.9 IoU points on nuclei; a CPU schedule of "
        "minutes shows which models train, not their converged ranking.",
        "",
        *sorted({f"- command: `{r['command']}`" for r in runs.values()}),
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}",
        "",
    ]
    path = os.path.join(RESULTS, "semantic_nuclei_cpu.md")
    with atomic_write(path, encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output-root", default=os.path.join(REPO, "output", "semantic_comparison")
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the table from the JSONs"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "DETECTRON2_DATASETS={} OMP_NUM_THREADS={} python {}".format(
        os.environ.get("DETECTRON2_DATASETS", "datasets"),
        os.environ.get("OMP_NUM_THREADS", "unset"),
        " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
    )
    if not args.report_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        for key in args.rows:
            logging.getLogger("maskrcnnpp").info("semantic comparison: training %s", key)
            run_row(key, args.opts, args.output_root, args.threads, command)
            write_report()
    write_report()


if __name__ == "__main__":
    main()
