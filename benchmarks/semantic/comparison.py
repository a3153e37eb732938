"""The ``semantic`` job: U-Net, wide U-Net and UNet++ (deep supervision) on the nuclei foreground.

Each row is one config (configs/nuclei/*_cpu.yaml, which differ only in the model) trained from
scratch with the repository's Trainer and a fixed SEED per run, then evaluated on DATASETS.TEST
(dsb2018_test) through Trainer.test: foreground IoU and Dice of the probability map at 0.5.
Trailing KEY VALUE pairs override every row alike. One record per (row, seed) goes to
results/semantic_nuclei_cpu/ (records.py); finished runs are skipped, and the table (mean ± std
over seeds, and differences paired by seed) is rebuilt from all of them.
"""
import argparse
import datetime
import logging
import os
import time

import torch
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg

from ..measure import REPO, count_parameters, machine_line, publish
from ..records import load_semantic_runs, semantic_run_path, write_record
from ..stats import beyond_spread, mean_std, paired
from ..tables import fmt, table

FLAGS = ("results-dir", "output-root", "seeds", "threads", "render-only")
DEFAULTS = {"output_root": os.path.join(REPO, "output", "semantic_comparison"), "seeds": [0, 1, 2]}
ROWS = {
    "unet": ("U-Net", "configs/nuclei/unet_cpu.yaml"),
    "wide_unet": ("wide U-Net", "configs/nuclei/wide_unet_cpu.yaml"),
    "unetpp_ds": ("UNet++ (deep supervision, ensemble)", "configs/nuclei/unetpp_ds_cpu.yaml"),
}
logger = logging.getLogger("maskrcnnpp")


def add_arguments(parser):
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every row")


def runs_dir_of(results_dir):
    return os.path.join(results_dir, "semantic_nuclei_cpu")


def run_row(key, seed, opts, output_root, threads, command, runs_dir):
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
    losses = {k: trainer.storage.history(k).median(20)
              for k in ("total_loss", "loss_bce", "loss_dice") if k in trainer.storage.histories()}

    eval_cfg = cfg.clone()
    eval_cfg.defrost()
    eval_cfg.DATASETS.TEST = test_sets
    eval_cfg.freeze()
    start = time.perf_counter()
    results = Trainer.test(eval_cfg, trainer.model)
    eval_seconds = time.perf_counter() - start
    record = {
        "row": key, "seed": seed, "model": name, "config": config, "overrides": list(opts),
        "parameters": count_parameters(trainer.model), "iterations": cfg.SOLVER.MAX_ITER,
        "train_seconds": train_seconds, "eval_seconds": eval_seconds, "test_sets": list(test_sets),
        # DefaultTrainer.test unwraps the results of a single test set.
        "metrics": results["nuclei"] if len(test_sets) == 1 else results,
        "final_losses_median20": losses, "threads": threads, "command": command, "settings": settings_of(cfg),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_record(semantic_run_path(runs_dir, key, seed), record)
    return record


def settings_of(cfg) -> dict:
    u, s = cfg.MODEL.UNETPP, cfg.SOLVER
    return {
        "train_set": list(cfg.DATASETS.TRAIN), "patch": u.PATCH_SIZE,
        "flips": "horizontal + vertical" if cfg.INPUT.VERTICAL_FLIP else cfg.INPUT.RANDOM_FLIP,
        "batch": s.IMS_PER_BATCH, "optimizer": s.OPTIMIZER, "base_lr": s.BASE_LR, "warmup_iters": s.WARMUP_ITERS,
        "steps": list(s.STEPS), "max_iter": s.MAX_ITER, "weight_decay": s.WEIGHT_DECAY, "norm": u.NORM or "none",
        "loss": f"{u.LOSS.BCE_WEIGHT} BCE + {u.LOSS.DICE_WEIGHT} (1 - soft Dice), mean over heads",
        "window": u.SLIDING_WINDOW.SIZE or "whole image", "window_overlap": u.SLIDING_WINDOW.OVERLAP,
        "inference": u.INFERENCE,
    }


def seed_stat(rs, get, decimals=2):
    """"mean ± std" of ``get(run)`` over the runs ``rs``."""
    return fmt(*mean_std([get(r) for r in rs]), decimals=decimals)


def score_cells(rs):
    """The fg IoU, fg Dice, pooled IoU and eval s/image cells, mean ± std over the runs ``rs``."""
    return [seed_stat(rs, get) for get in (
        lambda r: r["metrics"]["fg_iou"], lambda r: r["metrics"]["fg_dice"], lambda r: r["metrics"]["fg_iou_pooled"],
        lambda r: r["eval_seconds"] / (r["metrics"].get("num_images") or 1))]


def seeded_table(seeded):
    rows = []
    for key in (k for k in ROWS if seeded.get(k)):
        rs = [seeded[key][s] for s in sorted(seeded[key])]
        rows.append([rs[0]["model"], f"{rs[0]['parameters'] / 1e6:.2f}M", ", ".join(str(s) for s in sorted(seeded[key])),
                     rs[0]["iterations"], seed_stat(rs, lambda r: r["train_seconds"] / 60, 1),
                     seed_stat(rs, lambda r: r["train_seconds"] / r["iterations"])] + score_cells(rs))
    head = ["model", "params", "seeds", "iterations", "train time (min)", "s/iter", "fg IoU", "fg Dice",
            "pooled IoU", "eval s/image"]
    return table(head, rows, "lrl" + "r" * 7)


def paired_line(a, b, name_a, name_b):
    """``name_a`` − ``name_b`` fg IoU paired by seed, from their {seed: run}; [] without a common seed."""
    def fg_iou(runs):
        return {s: r["metrics"]["fg_iou"] for s, r in runs.items()}

    seeds, diffs = paired(fg_iou(a), fg_iou(b))
    if not seeds:
        return []
    mean, spread, beyond = beyond_spread(diffs, *([r[s]["metrics"]["fg_iou"] for s in seeds] for r in (a, b)),
                                         either_way=True)
    per_seed = ", ".join(f"seed {s} {d:+.2f}" for s, d in zip(seeds, diffs))
    if len(seeds) < 2:
        judged = "one seed: too few to compare with the seed spread"
    else:
        judged = f"{'beyond' if beyond else 'within'} the seed spread {spread:.2f}"
    return [f"- {name_a} − {name_b}, fg IoU paired by seed: {mean:+.2f} ({per_seed}); {judged}"]


def write_report(results_dir):
    seeded, single = load_semantic_runs(runs_dir_of(results_dir))
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
        for key, base in (("unetpp_ds", "unet"), ("wide_unet", "unet"), ("unetpp_ds", "wide_unet")):
            lines += paired_line(seeded.get(key, {}), seeded.get(base, {}), ROWS[key][0], ROWS[base][0])
    else:
        lines += ["No seeded runs yet (`--seeds 0 1 2`)."]
    if single:
        lines += ["", "Earlier single runs, each with a random seed (not comparable beyond their spread):", ""]
        lines += table(["model", "iterations", "train time (min)", "fg IoU", "fg Dice"], [
            [r["model"], r["iterations"], f"{r['train_seconds'] / 60:.1f}", f"{r['metrics']['fg_iou']:.2f}",
             f"{r['metrics']['fg_dice']:.2f}"] for r in single], "lrrrr")
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
        machine_line(),
        "",
    ]
    return publish("\n".join(lines), os.path.join(results_dir, "semantic_nuclei_cpu.md"))


def run(args):
    runs_dir, trained = runs_dir_of(args.results_dir), 0
    if not args.render_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        for seed in args.seeds:  # seed by seed: every row of a seed before the next seed
            for key in args.rows:
                if os.path.isfile(semantic_run_path(runs_dir, key, seed)):
                    logger.info("semantic comparison: %s seed %d done, skipped", key, seed)
                    continue
                logger.info("semantic comparison: training %s seed %d", key, seed)
                run_row(key, seed, args.opts, args.output_root, args.threads, args.command, runs_dir)
                trained += 1
                write_report(args.results_dir)
    if not trained:
        write_report(args.results_dir)
    return 0
