"""The ``head-choice`` job: the semantic UNet++'s inference mode, chosen on val, reported on test.

The UNet++ with deep supervision predicts with the mean of its heads ("ensemble") or pruned to
one level ("L1" .. "L4"). This evaluates every seed's UNet++ that the ``semantic`` job trained
for a report (--report; <output-root>/unetpp_ds_seed<k>/config.yaml and the weights it scored) on
dsb2018_val in every mode, chooses the mode with the highest mean val fg IoU (the cheaper one on a
tie), and evaluates only that mode on dsb2018_test; the ensemble's test figures are the semantic
comparison's own runs. One record per (split, mode, seed) goes to results/<report>_head_choice/
(records.py), the report to results/<report>_head_choice.md.
"""
import datetime
import os
import statistics
import time

from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import Trainer, load_weights_strictly
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError

from ..measure import REPO, count_parameters, machine_line, publish
from ..records import head_choice_run_path, load_head_choice_runs, load_semantic_runs, write_record
from ..tables import table
from .comparison import REPORT, ROWS, output_root_of, paired_line, runs_dir_of, score_cells, scored_weights

FLAGS = ("results-dir", "output-root", "seeds", "threads", "render-only")
DEFAULTS = {"seeds": [0, 1, 2]}
ROW = "unetpp_ds"
SPLITS = {"val": "dsb2018_val", "test": "dsb2018_test"}


def add_arguments(parser):
    parser.add_argument("--report", default=REPORT, help="the semantic report whose UNet++ runs are evaluated")


def choice_dir(results_dir, report):
    return os.path.join(results_dir, f"{report}_head_choice")


def modes_of(depth):
    return [f"L{k}" for k in range(1, depth + 1)] + ["ensemble"]


def cost_order(mode):
    """L1 < L2 < ... < ensemble: the order of their compute."""
    return (1, 0) if mode == "ensemble" else (0, int(mode[1:]))


def trained_model(output_root, seed):
    """(config.yaml, weights) of the semantic comparison's UNet++ run of ``seed``: the weights its
    scores come from (model_best.pth when chosen on val, else model_final.pth)."""
    folder = os.path.join(output_root, f"{ROW}_seed{seed}")
    config = _trained(os.path.join(folder, "config.yaml"), seed)
    return config, _trained(scored_weights(folder, load_cfg(config)), seed)


def _trained(path, seed):
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found; train it first with "
                        f"python -m benchmarks semantic --rows {ROW} --seeds {seed}")
    return path


def evaluate(seed, mode, dataset, output_root, threads, command, path):
    """Evaluate seed ``seed``'s trained UNet++ in ``mode`` on ``dataset``; write its record to ``path``."""
    config, weights = trained_model(output_root, seed)
    out = os.path.join(output_root, "head_choice", os.path.splitext(os.path.basename(path))[0])
    cfg = load_cfg(config, ["MODEL.UNETPP.INFERENCE", mode, "DATASETS.TEST", f"('{dataset}',)", "OUTPUT_DIR", out])
    cfg.freeze()
    model = Trainer.build_model(cfg)
    load_weights_strictly(model, weights, config)
    used = model.pruned(model.inference_level) if model.inference_level else model
    start = time.perf_counter()
    metrics = Trainer.test(cfg, model)["nuclei"]
    record = {
        "mode": mode, "seed": seed, "dataset": dataset, "weights": os.path.relpath(weights, REPO),
        "parameters": count_parameters(used), "eval_seconds": time.perf_counter() - start, "metrics": metrics,
        "threads": threads, "command": command,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    write_record(path, record)
    return record


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


def runs_table(rows, first="inference"):
    """rows: [(label, {seed: run})] -> markdown lines, mean ± std over each row's seeds."""
    cells = [[label, f"{runs[min(runs)]['parameters'] / 1e6:.2f}M", ", ".join(str(s) for s in sorted(runs))]
             + score_cells([runs[s] for s in sorted(runs)]) for label, runs in rows]
    return table([first, "parameters", "seeds", "fg IoU", "fg Dice", "pooled IoU", "eval s/image"], cells, "lrlrrrr")


def scored_on(runs_by_mode):
    """ " on `dataset` (N images)" from the first run of {mode: {seed: run}}; "" without one."""
    runs = [r for by_seed in runs_by_mode.values() for r in by_seed.values()]
    if not runs:
        return ""
    dataset = runs[0].get("dataset") or runs[0]["test_sets"][0]  # the comparison's runs list their sets
    return f" on `{dataset}` ({runs[0]['metrics'].get('num_images')} images)"


def write_report(results_dir, seeds, report=REPORT):
    choice = load_head_choice_runs(choice_dir(results_dir, report))
    seeded, _ = load_semantic_runs(runs_dir_of(results_dir, report))
    val = {m: {s: r for s, r in runs.items() if s in seeds} for m, runs in choice.get("val", {}).items()}
    chosen = choose(val, seeds)
    lines = [
        "# Semantic UNet++ (deep supervision): which head to predict with, chosen on val",
        "",
        f"The UNet++ rows of `{report}.md` (one model per seed, trained once) predict with "
        "the mean of their four heads (`ensemble`) or pruned to one level (`L1` .. `L4`: "
        "`MODEL.UNETPP.INFERENCE`). Each mode is scored on the val split; the mode with the "
        "highest mean val fg IoU is then scored on the test split beside the comparison's other "
        "rows. Foreground IoU / Dice in percent, mean over images; pooled IoU over all pixels.",
        "",
        f"## Val: every mode{scored_on(val)}",
        "",
    ]
    lines += runs_table([(m, val[m]) for m in sorted(val, key=cost_order) if val[m]]) if val else ["No val runs yet."]
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
        lines += runs_table([(name, runs) for name, runs in rows if runs], first="model") + [""]
        for base in ("unet", "wide_unet", ROW):
            if base != ROW or chosen != "ensemble":
                lines += paired_line(test_runs, seeded.get(base, {}), chosen_name, ROWS[base][0])
    everything = [r for split in choice.values() for runs in split.values() for r in runs.values()]
    lines += [
        "",
        "Evaluation only: no model is retrained. Eval s/image is each run's wall time as it happened, "
        "on a 2-core machine that may have run other jobs beside it: indicative only "
        "(`unetpp_pruning_cpu.md` times the levels side by side). "
        f"Per-run JSON: `benchmarks/results/{report}_head_choice/*.json`.",
        "",
        *sorted({f"- command: `{r['command']}`" for r in everything}),
        machine_line(),
        "",
    ]
    return publish("\n".join(lines), choice_dir(results_dir, report) + ".md")


def run(args):
    runs_dir, output_root = choice_dir(args.results_dir, args.report), output_root_of(args)
    if not args.render_only:
        setup_logger(name="detectron2")
        setup_logger(name="maskrcnnpp")
        depth = load_cfg(trained_model(output_root, args.seeds[0])[0]).MODEL.UNETPP.DEPTH
        for seed in args.seeds:
            for mode in modes_of(depth):
                path = head_choice_run_path(runs_dir, "val", mode, seed)
                if not os.path.isfile(path):
                    evaluate(seed, mode, SPLITS["val"], output_root, args.threads, args.command, path)
        chosen = choose(load_head_choice_runs(runs_dir)["val"], args.seeds)
        for seed in args.seeds if chosen != "ensemble" else []:
            path = head_choice_run_path(runs_dir, "test", chosen, seed)
            if not os.path.isfile(path):
                evaluate(seed, chosen, SPLITS["test"], output_root, args.threads, args.command, path)
    write_report(args.results_dir, args.seeds, args.report)
    return 0
