"""Training for a wall-clock budget instead of a number of iterations.

A profile with ``train_minutes`` trains each model for as many iterations as fit in
that many minutes on the machine running it. A short probe (the run's own config,
a few iterations) measures the seconds per iteration first; the iteration count
follows from it, and the learning-rate steps keep their fractions of the config's
schedule. The result is kept in the run's ``train_budget.json`` (records.py), so a
resumed run keeps the same schedule.
"""
import os
import shutil
import statistics

from detectron2.utils.env import seed_all_rng

from maskrcnnpp.engine import Trainer

from ..records import read_budget, write_budget

PROBE_WARMUP = 10  # first iterations left out (allocation, data loader start-up)
PROBE_ITERS = 30


def budget_schedule(cfg, minutes, seconds_per_iter):
    """MAX_ITER, STEPS and WARMUP_ITERS that fill ``minutes`` at ``seconds_per_iter``, with the
    steps at the same fractions of the schedule as in ``cfg``."""
    max_iter = max(1, int(minutes * 60 / seconds_per_iter))
    steps = [int(round(s / cfg.SOLVER.MAX_ITER * max_iter)) for s in cfg.SOLVER.STEPS]
    return {"max_iter": max_iter, "steps": steps, "warmup_iters": min(cfg.SOLVER.WARMUP_ITERS, max_iter // 4)}


def probe_seconds_per_iter(cfg, output_dir, warmup=PROBE_WARMUP, iters=PROBE_ITERS):
    """Median wall seconds of an iteration of ``cfg``, over ``iters`` iterations after ``warmup``.

    ``output_dir`` (the probe's own, with its final checkpoint) is removed afterwards."""
    probe = cfg.clone()
    probe.defrost()
    probe.OUTPUT_DIR = output_dir
    probe.DATASETS.TEST = ()
    probe.SOLVER.MAX_ITER = warmup + iters
    probe.SOLVER.CHECKPOINT_PERIOD = 10 ** 9  # nothing to keep
    probe.freeze()
    seed_all_rng(probe.SEED)
    trainer = Trainer(probe)
    trainer.resume_or_load(resume=False)
    trainer.train()
    # IterationTimer's per-iteration wall time, data loading included
    times = [t for t, it in trainer.storage.history("time").values() if it >= warmup]
    shutil.rmtree(output_dir, ignore_errors=True)
    return statistics.median(times)


def apply_training_budget(cfg, minutes, output_dir, probe=probe_seconds_per_iter):
    """Set ``cfg``'s schedule (unfrozen) to fill ``minutes``; returns the budget record."""
    budget = read_budget(output_dir)
    if budget is None:
        seconds = probe(cfg, os.path.join(output_dir, "budget_probe"))
        budget = {"minutes": minutes, "probe_seconds_per_iter": seconds, **budget_schedule(cfg, minutes, seconds)}
        write_budget(output_dir, budget)
    cfg.SOLVER.MAX_ITER = budget["max_iter"]
    cfg.SOLVER.STEPS = tuple(budget["steps"])
    cfg.SOLVER.WARMUP_ITERS = budget["warmup_iters"]
    return budget
