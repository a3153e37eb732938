"""The ``val-curve`` job: a training run's evaluation curve, to choose a schedule's length on val.

Reads the metrics its periodic evaluations (TEST.EVAL_PERIOD) wrote to OUTPUT_DIR/metrics.json,
one row per evaluation, and writes results/val_curve_<label>.md (the run's folder, what it trained,
its best checkpoint, the command, machine and commit).
"""
import json
import math
import os

import yaml

from maskrcnnpp.engine.best_checkpoint import read_best_record
from maskrcnnpp.errors import UserError

from .measure import provenance, publish
from .tables import table

FLAGS = ("results-dir",)
# (metrics.json key, column title, digits): the nuclei evaluator's headline metrics, then COCO's
COLUMNS = (
    ("fg_iou", "fg IoU (%)", 2), ("fg_dice", "fg Dice (%)", 2), ("dsb_map", "DSB mAP", 3),
    ("segm/AP", "segm AP", 1), ("bbox/AP", "bbox AP", 1),
)


def add_arguments(parser):
    parser.add_argument("output_dir", help="the training run's OUTPUT_DIR")
    parser.add_argument("--label", required=True, help="names the report: val_curve_<label>.md")


def evaluations(output_dir):
    """[(iterations done, {column key: value})] of every evaluation in output_dir/metrics.json,
    in order; a resumed run's repeated iterations keep their last record.

    A periodic evaluation is recorded at the index of the iteration it followed (999 after
    1000 iterations); the one after training at SOLVER.MAX_ITER itself (from the run's
    config.yaml), which is already the count."""
    max_iter = _max_iter(output_dir)
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found (is {output_dir} a training run's OUTPUT_DIR?)")
    found = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if line.strip():
                    raise UserError(f"{path}: line {number} is not JSON (a run killed while writing it?)") from None
                continue
            values = {key: _value(record, key) for key, _, _ in COLUMNS}
            if any(v is not None for v in values.values()):
                found[iterations_done(record["iteration"], max_iter)] = values
    return sorted(found.items())


def iterations_done(iteration, max_iter):
    """Iterations trained before an evaluation Detectron2 stored at ``iteration``."""
    return iteration if iteration == max_iter else iteration + 1


def _config(output_dir):
    """The run's config.yaml as a dict; {} without one."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _max_iter(output_dir):
    """SOLVER.MAX_ITER of the run's config.yaml; None without one."""
    return _config(output_dir).get("SOLVER", {}).get("MAX_ITER")


def settings_lines(output_dir):
    """What the run trained and what its best checkpoint is, from its config.yaml and model_best.json."""
    cfg, lines = _config(output_dir), []
    if cfg:
        model, solver, data = cfg.get("MODEL", {}), cfg.get("SOLVER", {}), cfg.get("DATASETS", {})
        semantic = model.get("META_ARCHITECTURE") == "SemanticUNetPlusPlus"
        unetpp = model.get("UNETPP", {})
        norm = unetpp.get("NORM") if semantic else None
        what = f"{model.get('META_ARCHITECTURE')}" + (f" ({unetpp.get('CONNECTIVITY')})" if semantic else "")
        lines.append(f"- trained: {what} on {', '.join(data.get('TRAIN', []))}, evaluated "
                     f"on {', '.join(data.get('TEST', []))}; {solver.get('OPTIMIZER', 'SGD')} at {solver.get('BASE_LR')}, "
                     f"batch {solver.get('IMS_PER_BATCH')}, steps {list(solver.get('STEPS', []))}, "
                     f"max_iter {solver.get('MAX_ITER')}, seed {cfg.get('SEED')}"
                     + (f", norm {norm or 'none'}" if norm is not None else ""))
    best = read_best_record(output_dir)
    if best:
        lines.append(f"- model_best.pth: {best['metric']} {best['value']:.2f} after "
                     f"{iterations_done(best['iteration'], cfg.get('SOLVER', {}).get('MAX_ITER'))} iterations")
    return lines


def _value(record, key):
    """The record's metric ``key``: Detectron2 flattens {"nuclei": {"fg_iou": ..}} to "nuclei/fg_iou"."""
    for name in (key, f"nuclei/{key}"):
        value = record.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def render(output_dir, rows, command):
    lines = [
        f"# Evaluation curve of `{os.path.basename(os.path.normpath(output_dir))}`",
        "",
        *provenance(command),
        f"- run: `{output_dir}`; one row per evaluation (TEST.EVAL_PERIOD), after that many iterations",
        *settings_lines(output_dir),
        "",
    ]
    # Only the metrics the run's evaluator gave (a semantic model has no DSB mAP nor AP).
    columns = [c for c in COLUMNS if any(values[c[0]] is not None for _, values in rows)] or list(COLUMNS[:1])
    cells = [[iteration] + [f"{values[k]:.{d}f}" if values[k] is not None else "" for k, _, d in columns]
             for iteration, values in rows]
    lines += table(["iteration"] + [title for _, title, _ in columns], cells, "r" * (1 + len(columns)))
    return "\n".join(lines) + "\n"


def run(args):
    text = render(args.output_dir, evaluations(args.output_dir), args.command)
    publish(text, os.path.join(args.results_dir, f"val_curve_{args.label}.md"))
    return 0
