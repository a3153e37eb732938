#!/usr/bin/env python
"""Choose the semantic UNet++'s inference mode on val, then report the choice on test.

    DETECTRON2_DATASETS=datasets OMP_NUM_THREADS=2 python benchmarks/unetpp_head_choice.py --threads 2

The UNet++ with deep supervision predicts either with the mean of its heads ("ensemble") or
pruned to one level ("L1" .. "L4", the paper's inference-time pruning). This takes the UNet++
models that benchmarks/semantic_comparison.py trained and kept
(<output-root>/unetpp_ds_seed<k>/config.yaml and model_final.pth), evaluates every seed's
model on dsb2018_val in every mode, chooses the mode with the highest mean val fg IoU (the
cheaper mode on a tie), and evaluates only that mode on dsb2018_test. The ensemble's test
figures are the semantic comparison's own runs. One JSON per (split, mode, seed) goes to
benchmarks/results/unetpp_head_choice/ (finished ones are skipped), and
unetpp_head_choice_cpu.md is rebuilt from them and from semantic_nuclei_cpu/.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import torch

from repo_path import REPO  # this checkout's maskrcnnpp first on sys.path
from measure import command_text, cpu_model  # noqa: E402
from semantic_comparison import RESULTS, ROWS, load_runs, paired_line, score_cells  # noqa: E402

from detectron2.utils.logger import setup_logger  # noqa: E402
from maskrcnnpp.engine import Trainer, load_weights_strictly  # noqa: E402
from maskrcnnpp.engine.setup import load_cfg  # noqa: E402
from maskrcnnpp.errors import UserError, run_command  # noqa: E402
from maskrcnnpp.utils.json_io import atomic_write, write_json_atomic  # noqa: E402

ROW = "unetpp_ds"
SPLITS = {"val": "dsb2018_val", "test": "dsb2018_test"}


def modes_of(depth):
    return [f"L{k}" for k in range(1, depth + 1)] + ["ensemble"]


def cost_order(mode):
    """L1 < L2 < ... < ensemble: the order of their compute."""
    return (1, 0) if mode == "ensemble" else (0, int(mode[1:]))


def run_path(runs_dir, split, mode, seed):
    return os.path.join(runs_dir, f"{split}_{mode}_seed{seed}.json")


def trained_model(output_root, seed):
    """(config.yaml, model_final.pth) of the semantic comparison's UNet++ run of ``seed``."""
    folder = os.path.join(output_root, f"{ROW}_seed{seed}")
    paths = tuple(os.path.join(folder, name) for name in ("config.yaml", "model_final.pth"))
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(
                f"{path}: not found; train it first with "
                f"benchmarks/semantic_comparison.py --rows {ROW} --seeds {seed}"
            )
    return paths


def evaluate(seed, mode, dataset, output_root, threads, command, path):
    """Evaluate seed ``seed``'s trained UNet++ in ``mode`` on ``dataset``; write its JSON to ``path``."""
    config, weights = trained_model(output_root, seed)
    out = os.path.join(output_root, "head_choice", os.path.splitext(os.path.basename(path))[0])
    cfg = load_cfg(config, ["MODEL.UNETPP.INFERENCE", mode, "DATASETS.TEST", f"('{dataset}',)",
                            "OUTPUT_DIR", out])
    cfg.freeze()
    model = Trainer.build_model(cfg)
    load_weights_strictly(model, weights, config)
    used = model.pruned(model.inference_level) if model.inference_level else model
    start = time.perf_counter()
    metrics = Trainer.test(cfg, model)["nuclei"]
    record = {
        "mode": mode,
        "seed": seed,
        "dataset": dataset,
        "weights": os.path.relpath(weights, REPO),
        "parameters": sum(p.numel() for p in used.parameters()),
        "eval_seconds": time.perf_counter() - start,
        "metrics": metrics,
        "threads": threads,
        "command": command,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_json_atomic(path, record, indent=2)
    return record


def load_choice_runs(runs_dir):
    """{split: {mode: {seed: run}}} from the JSONs in ``runs_dir``."""
    runs = {}
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(runs_dir, name)) as f:
                run = json.load(f)
            split = name.split("_", 1)[0]
            runs.setdefault(split, {}).setdefault(run["mode"], {})[run["seed"]] = run
    return runs


def choose(val_runs, seeds):
    """The mode with the highest mean val fg IoU over ``seeds``, the cheaper one on a tie;
    only modes evaluated on every seed take part (None when there is none)."""
    complete = [m for m, runs in val_runs.items() if all(s in runs for s in seeds)]
    if not seeds or not complete:
        return None

    def mean_iou(mode):
        return statistics.fmean(val_runs[mode][s]["metrics"]["fg_iou"] for s in seeds)

    best = max(mean_iou(m) for m in complete)
    return min((m for m in complete if mean_iou(m) == best), key=cost_order)


def table(rows, first="inference"):
    """rows: [(label, {seed: run})] -> markdown lines, mean ± std over each row's seeds."""
    lines = [f"| {first} | parameters | seeds | fg IoU | fg Dice | pooled IoU | eval s/image |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for label, runs in rows:
        rs = [runs[s] for s in sorted(runs)]
        lines.append(f"| {label} | {rs[0]['parameters'] / 1e6:.2f}M | {', '.join(str(s) for s in sorted(runs))} "
                     f"| {score_cells(rs)} |")
    return lines


def scored_on(runs_by_mode):
    """ " on `dataset` (N images)" from the first run of {mode: {seed: run}}; "" without one."""
    runs = [r for by_seed in runs_by_mode.values() for r in by_seed.values()]
    if not runs:
        return ""
    dataset = runs[0].get("dataset") or runs[0]["test_sets"][0]  # the comparison's runs list their sets
    return f" on `{dataset}` ({runs[0]['metrics'].get('num_images')} images)"


def write_report(results_dir, seeds):
    choice = load_choice_runs(os.path.join(results_dir, "unetpp_head_choice"))
    seeded, _ = load_runs(os.path.join(results_dir, "semantic_nuclei_cpu"))
    val = {m: {s: r for s, r in runs.items() if s in seeds} for m, runs in choice.get("val", {}).items()}
    chosen = choose(val, seeds)
    lines = [
        "# Semantic UNet++ (deep supervision): which head to predict with, chosen on val",
        "",
        "The UNet++ rows of `semantic_nuclei_cpu.md` (one model per seed, trained once) predict with "
        "the mean of their four heads (`ensemble`) or pruned to one level (`L1` .. `L4`: "
        "`MODEL.UNETPP.INFERENCE`). Each mode is scored on the val split; the mode with the "
        "highest mean val fg IoU is then scored on the test split beside the comparison's other "
        "rows. Foreground IoU / Dice in percent, mean over images; pooled IoU over all pixels.",
        "",
        f"## Val: every mode{scored_on(val)}",
        "",
    ]
    lines += table([(m, val[m]) for m in sorted(val, key=cost_order) if val[m]]) if val else ["No val runs yet."]
    lines += [""]
    if chosen is None:
        lines += ["No mode has been scored on every seed yet: nothing chosen."]
    else:
        test_runs = seeded.get(ROW, {}) if chosen == "ensemble" else choice.get("test", {}).get(chosen, {})
        test_runs = {s: r for s, r in test_runs.items() if s in seeds}
        lines += [f"Chosen on val: **{chosen}** (the highest mean val fg IoU).", "",
                  f"## Test: the chosen mode{scored_on({chosen: test_runs})}", ""]
        chosen_name = f"UNet++ DS, {chosen} (chosen on val)"
        rows = [(ROWS[k][0], {s: r for s, r in seeded.get(k, {}).items() if s in seeds}) for k in ROWS]
        if chosen != "ensemble":
            rows.append((chosen_name, test_runs))
        lines += table([(name, runs) for name, runs in rows if runs], first="model") + [""]
        for base in ("unet", "wide_unet", ROW):
            if base != ROW or chosen != "ensemble":
                lines += paired_line(test_runs, seeded.get(base, {}), chosen_name, ROWS[base][0])
    everything = [r for split in choice.values() for runs in split.values() for r in runs.values()]
    lines += [
        "",
        "Evaluation only: no model is retrained. Eval s/image is each run's wall time as it happened, "
        "on a 2-core machine that may have run other jobs beside it: indicative only "
        "(`unetpp_pruning_cpu.md` times the levels side by side). "
        "Per-run JSON: `benchmarks/results/unetpp_head_choice/*.json`.",
        "",
        *sorted({f"- command: `{r['command']}`" for r in everything}),
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}",
        "",
    ]
    text = "\n".join(lines)
    with atomic_write(os.path.join(results_dir, "unetpp_head_choice_cpu.md"), encoding="utf-8") as f:
        f.write(text)
    print(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-root", default=os.path.join(REPO, "output", "semantic_comparison"),
                        help="where benchmarks/semantic_comparison.py kept its runs")
    parser.add_argument("--results-dir", default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the JSONs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = command_text("benchmarks/unetpp_head_choice.py", argv)
    runs_dir = os.path.join(args.results_dir, "unetpp_head_choice")
    if not args.report_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        depth = load_cfg(trained_model(args.output_root, args.seeds[0])[0]).MODEL.UNETPP.DEPTH
        for seed in args.seeds:
            for mode in modes_of(depth):
                path = run_path(runs_dir, "val", mode, seed)
                if not os.path.isfile(path):
                    evaluate(seed, mode, SPLITS["val"], args.output_root, args.threads, command, path)
        chosen = choose(load_choice_runs(runs_dir)["val"], args.seeds)
        for seed in args.seeds if chosen != "ensemble" else []:
            path = run_path(runs_dir, "test", chosen, seed)
            if not os.path.isfile(path):
                evaluate(seed, chosen, SPLITS["test"], args.output_root, args.threads, command, path)
    write_report(args.results_dir, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
