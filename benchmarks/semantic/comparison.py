"""The ``semantic`` job: U-Net, wide U-Net and UNet++ (deep supervision) on the nuclei foreground.

Each row is one config (configs/nuclei/*_cpu.yaml, which differ only in the model) trained from
scratch with the repository's Trainer and a fixed SEED per run, then evaluated on DATASETS.TEST
(dsb2018_test) through Trainer.test: foreground IoU and Dice of the probability map at 0.5.
Trailing KEY VALUE pairs override every row alike. One record per (row, seed) goes to
results/<report>/ (records.py); finished runs are skipped, and the table (mean ± std over seeds,
differences paired by seed, and each run's val curve) is rebuilt from all of them.
"""
import argparse
import datetime
import logging
import os
import time

import torch
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import Trainer, load_weights_strictly
from maskrcnnpp.engine.best_checkpoint import read_best_record
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.utils.json_io import atomic_write

from ..measure import REPO, Stopwatch, count_parameters, machine_line, publish
from ..records import (add_train_segment, load_semantic_runs, lock_run, read_json, semantic_run_path,
                       train_segments, write_record)
from ..val_curve import evaluations, iterations_done
from ..stats import beyond_spread, mean_std, paired
from ..tables import fmt, table

FLAGS = ("results-dir", "output-root", "seeds", "threads", "render-only")
DEFAULTS = {"seeds": [0, 1, 2]}
ROWS = {
    "unet": ("U-Net", "configs/nuclei/unet_cpu.yaml"),
    "wide_unet": ("wide U-Net", "configs/nuclei/wide_unet_cpu.yaml"),
    "unetpp_ds": ("UNet++ (deep supervision, ensemble)", "configs/nuclei/unetpp_ds_cpu.yaml"),
}
# results/<report>.md, its run records in results/<report>/, the trained runs in output/<report>/
# unless --output-root; the default is the report of the configs' own schedule
REPORT = "semantic_nuclei_cpu_converged"
TEST_SET = "dsb2018_test"
WINDOW_OVERLAP = 0.6667  # the paper's stride of 32 pixels in 96-pixel windows
logger = logging.getLogger("maskrcnnpp")


def add_arguments(parser):
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--report", default=REPORT,
                        help="names the report, results/<report>.md, its folder of run records and, "
                             "unless --output-root, the trained runs' folder output/<report>/")
    parser.add_argument("--test-set", default=TEST_SET, help="registered dataset the trained models are scored on")
    parser.add_argument("--windows", action="store_true",
                        help="also score in PATCH_SIZE windows at a stride of a third of them, as the paper infers")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every row")


def runs_dir_of(results_dir, report=REPORT):
    return os.path.join(results_dir, report)


def output_root_of(args):
    """Where a report's runs train: --output-root, else output/<report>/, so that the runs of two
    reports (two schedules) never resume each other's checkpoints."""
    return args.output_root or os.path.join(REPO, "output", args.report)


def run_row(key, seed, opts, output_root, threads, command, runs_dir, test_set=TEST_SET, windows=False):
    """Train one row and seed (resuming its OUTPUT_DIR), score it on ``test_set``, write its record.

    Under TEST.BEST_METRIC the weights scored are model_best.pth, chosen by the evaluations during
    training on the config's DATASETS.TEST (a val split); else the last ones. ``windows``: also
    scored as the paper infers, in PATCH_SIZE windows at a stride of a third of them."""
    name, config = ROWS[key]
    output_dir = os.path.join(output_root, f"{key}_seed{seed}")
    opts = list(opts) + ["SEED", str(seed), "OUTPUT_DIR", output_dir]
    cfg = load_cfg(os.path.join(REPO, config), opts)
    with lock_run(output_dir):
        with atomic_write(os.path.join(output_dir, "config.yaml")) as f:
            f.write(cfg.dump())
        seed_all_rng(seed)  # the same data order and patches for every row of one seed
        torch.manual_seed(seed)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=True)
        start_iter, losses = trainer.start_iter, None
        # A finished run (or one stopped early) is only scored again: Detectron2 would evaluate it
        # once more after a training of no iteration.
        if start_iter < cfg.SOLVER.MAX_ITER:
            with Stopwatch(cfg.MODEL.DEVICE) as watch:
                trainer.train()
            add_train_segment(output_dir, {"start_iter": start_iter, "end_iter": trainer.stopped_early_at or
                                           cfg.SOLVER.MAX_ITER, "wall_s": watch.wall, "cpu_s": watch.cpu,
                                           "loadavg_end": os.getloadavg()})
            losses = {k: trainer.storage.history(k).median(20) for k in ("total_loss", "loss_bce", "loss_dice")
                      if k in trainer.storage.histories()}
        segments = train_segments(output_dir)
        best = read_best_record(output_dir) if cfg.TEST.BEST_METRIC else None
        if best:
            load_weights_strictly(trainer.model, scored_weights(output_dir, cfg))
        scored = {"whole image": score(cfg, trainer.model, test_set, window=0)}
        if windows:
            scored["windows"] = score(cfg, trainer.model, test_set, window=cfg.MODEL.UNETPP.PATCH_SIZE)
    curve = [[iterations, values["fg_iou"]] for iterations, values in evaluations(output_dir)] if best else []
    record = {
        "row": key, "seed": seed, "model": name, "config": config, "overrides": list(opts),
        "parameters": count_parameters(trainer.model),
        "iterations": max((s["end_iter"] for s in segments), default=cfg.SOLVER.MAX_ITER),
        "train_seconds": sum(s["wall_s"] for s in segments), "train_segments": segments,
        "eval_seconds": scored["whole image"][1], "test_sets": [test_set],
        "metrics": scored["whole image"][0],
        "windows": {"metrics": scored["windows"][0], "eval_seconds": scored["windows"][1]} if windows else None,
        "val_set": list(cfg.DATASETS.TEST) if best else None, "best": best, "val_curve": curve,
        "final_losses_median20": losses if losses is not None else
        read_json(semantic_run_path(runs_dir, key, seed), {}).get("final_losses_median20"),
        "threads": threads, "device": cfg.MODEL.DEVICE, "command": command, "settings": settings_of(cfg),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_record(semantic_run_path(runs_dir, key, seed), record)
    return record


def scored_weights(output_dir, cfg):
    """The checkpoint of a trained row that its scores come from: model_best.pth, chosen on val,
    when the run kept one (TEST.BEST_METRIC), else model_final.pth."""
    name = "model_best.pth" if cfg.TEST.BEST_METRIC and read_best_record(output_dir) else "model_final.pth"
    return os.path.join(output_dir, name)


def score(cfg, model, test_set, window):
    """(nuclei metrics, seconds) of ``model`` on ``test_set``, whole images (``window`` 0) or in
    ``window``-pixel windows at a stride of a third of them."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (test_set,)
    cfg.freeze()
    kept = model.window_size, model.window_overlap
    model.window_size, model.window_overlap = window, WINDOW_OVERLAP
    try:
        start = time.perf_counter()
        results = Trainer.test(cfg, model)
        # DefaultTrainer.test unwraps the results of a single test set.
        return results["nuclei"], time.perf_counter() - start
    finally:
        model.window_size, model.window_overlap = kept


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
    """One row per model. Runs chosen on val add the best val fg IoU and where it was; runs also
    scored in windows add that fg IoU."""
    everything = [r for runs in seeded.values() for r in runs.values()]
    chosen, windowed = any(r.get("best") for r in everything), any(r.get("windows") for r in everything)
    rows = []
    for key in (k for k in ROWS if seeded.get(k)):
        rs = [seeded[key][s] for s in sorted(seeded[key])]
        iterations = {r["iterations"] for r in rs}
        row = [rs[0]["model"], f"{rs[0]['parameters'] / 1e6:.2f}M", ", ".join(str(s) for s in sorted(seeded[key])),
               iterations.pop() if len(iterations) == 1 else seed_stat(rs, lambda r: r["iterations"], 0),
               seed_stat(rs, lambda r: r["train_seconds"] / 60, 1),
               seed_stat(rs, lambda r: r["train_seconds"] / r["iterations"])]
        if chosen:
            row += [seed_stat(rs, lambda r: r["best"]["value"]) if all(r.get("best") for r in rs) else "",
                    ", ".join(str(iterations_done(r["best"]["iteration"], r["settings"]["max_iter"])) if r.get("best")
                              else "-" for r in rs)]
        row += score_cells(rs)
        if windowed:
            row.append(seed_stat(rs, lambda r: r["windows"]["metrics"]["fg_iou"]) if all(r.get("windows") for r in rs)
                       else "")
        rows.append(row)
    head = ["model", "params", "seeds", "iterations", "train time (min)", "s/iter"]
    head += ["best val fg IoU", "best after (iterations)"] if chosen else []
    head += ["fg IoU", "fg Dice", "pooled IoU", "eval s/image"] + (["fg IoU, sliding windows"] if windowed else [])
    return table(head, rows, "lrl" + "r" * (len(head) - 3))


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


def curve_table(seeded):
    """Each run's val fg IoU at every evaluation, one row per model and seed, and how much its last
    evaluation changed it: [] when no run kept a curve."""
    runs = [(ROWS[k][0], s, dict(seeded[k][s].get("val_curve") or [])) for k in ROWS for s in sorted(seeded.get(k, {}))]
    runs = [run for run in runs if run[2]]
    if not runs:
        return []
    points = sorted({i for _, _, curve in runs for i in curve})
    rows = []
    for model, seed, curve in runs:
        done = sorted(curve)
        change = f"{curve[done[-1]] - curve[done[-2]]:+.2f}" if len(done) > 1 else "–"
        rows.append([model, seed] + [f"{curve[i]:.2f}" if i in curve else "" for i in points] + [change])
    head = ["model", "seed"] + [str(i) for i in points] + ["last change"]
    return ["Val fg IoU during training, after that many iterations (the run's DATASETS.TEST), and "
            "its change at the last evaluation:", ""] + table(head, rows, "ll" + "r" * (len(head) - 2))


def threads_line(runs):
    by_threads = {}
    for r in runs:
        by_threads.setdefault(r["threads"], set()).add(r["model"])
    where = "2-core machine shared with other jobs, so times are indicative only"
    if len(by_threads) == 1:
        return f"Threads: {next(iter(by_threads))} (torch.set_num_threads and OMP_NUM_THREADS) on a {where}."
    parts = "; ".join(f"{n}: {', '.join(sorted(models))}" for n, models in sorted(by_threads.items()))
    return (f"Threads (torch.set_num_threads and OMP_NUM_THREADS) per run, {parts}, on a {where}; "
            "times of runs on different thread counts do not compare.")


def write_report(results_dir, report=REPORT):
    seeded, single = load_semantic_runs(runs_dir_of(results_dir, report))
    everything = [r for runs in seeded.values() for r in runs.values()] + single
    on_gpu = any(str(r.get("device", "cpu")).startswith("cuda") for r in everything)
    lines = [
        f"# Semantic nuclei segmentation on {'GPU' if on_gpu else 'CPU'}: U-Net vs wide U-Net vs UNet++",
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
        curves = curve_table(seeded)
        lines += ([""] if lines[-1] else []) + curves if curves else []
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
            f"Device: {first['device']}." if on_gpu else threads_line(everything),
            f"Per-run JSON (metrics, losses, timings): `benchmarks/results/{report}/*.json`.",
        ]
    context = ("Context: the paper trained to convergence on a GPU (Adam 3e-4, early stopping) and "
               "reports UNet++ ahead of U-Net by about 1.7-1.9 IoU points on nuclei")
    if any(r.get("best") for r in everything):
        context += ("; here every run trains the schedule chosen on val for all rows "
                    "(configs/nuclei/Base-Semantic-CPU.yaml) and is scored with its best val checkpoint.")
    else:
        context += "; a CPU schedule of minutes shows which models train, not their converged ranking."
    lines += [
        "",
        context,
        "",
        *sorted({f"- command: `{r['command']}`" for r in everything}),
        machine_line(),
        "",
    ]
    return publish("\n".join(lines), os.path.join(results_dir, f"{report}.md"))


def run(args):
    runs_dir, trained = runs_dir_of(args.results_dir, args.report), 0
    if not args.render_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        for seed in args.seeds:  # seed by seed: every row of a seed before the next seed
            for key in args.rows:
                if os.path.isfile(semantic_run_path(runs_dir, key, seed)):
                    logger.info("semantic comparison: %s seed %d done, skipped", key, seed)
                    continue
                logger.info("semantic comparison: training %s seed %d", key, seed)
                run_row(key, seed, args.opts, output_root_of(args), args.threads, args.command, runs_dir,
                        args.test_set, args.windows)
                trained += 1
                write_report(args.results_dir, args.report)
    if not trained:
        write_report(args.results_dir, args.report)
    return 0
