"""The suite's files: what each holds, and the one place that reads and writes them.

Under the results folder (``benchmarks/results/`` unless ``--results-dir``):

``nuclei_runs/<profile>/<model>_seed<k>.json`` — one trained and evaluated Mask R-CNN run
(``compare``): ``profile``, ``model`` ("fpn" or "nested"), ``model_name``, ``seed``, ``config``
(the config file, relative to the repository), ``overrides`` (every KEY VALUE applied),
``config_yaml`` (the full config trained), ``test_set``, ``scale_policy`` (the policy's keys),
``max_iter``, ``ims_per_batch``, ``train_budget`` (``train_budget.json``'s record, or null);
``metrics`` (the evaluator's sections, ``nuclei``, ``segm``, ``bbox``); ``per_image`` (per test
image: ``image_id``, ``height``, ``width``, ``modality``, ``num_gt``, ``num_pred``, ``fg_iou``,
``fg_dice``, ``dsb_map``, and under the diameter policy ``diameter`` predicted at,
``diameter_source`` and the annotated ``gt_diameter``); ``oracle_scale_metrics`` (the nuclei
metrics at each image's annotated diameter, or null); ``parameters``; ``gflops`` (``input``,
``whole_model``, ``backbone_and_neck``, ``detections``: the trained model on the first test
image); ``train_timing`` (``iterations_timed``, ``wall_s``, ``cpu_s``, their per-iteration
figures and the ``segments`` of ``train_segments.json``); ``inference_timing``
(``images_timed``, ``wall_s_per_image``, ``cpu_s_per_image``, ``images_per_s``: model forward
only, after two warm-up images); ``command``, ``git_commit``, ``machine``, ``loadavg_at_end``,
``date``.

``nuclei_runs/<profile>/costs.json`` — each model's size at the profile's test input, built fresh
(so independent of training): ``input`` and per model ``parameters``, ``gflops_whole``,
``gflops_backbone_and_neck``, ``detections`` (score threshold 0).

``semantic_nuclei_<device>/<row>_seed<k>.json`` (``--report``) — one semantic model trained and
evaluated (``semantic``): ``row``, ``seed``, ``model``, ``config``, ``overrides``, ``parameters``,
``iterations`` (trained: SOLVER.MAX_ITER, or fewer where TEST.PATIENCE stopped it), ``train_seconds``, ``train_segments``
(as ``train_segments.json``), ``eval_seconds``, ``test_sets``, ``metrics`` (nuclei section, whole
images), ``windows`` (``metrics`` and ``eval_seconds`` in PATCH_SIZE windows, or null),
``val_set``, ``best`` (``model_best.json``: ``metric``, ``value``, ``iteration``; the weights
scored) and ``val_curve`` ([iterations, val fg IoU] pairs), or null without TEST.BEST_METRIC,
``final_losses_median20``, ``threads``, ``device``, ``command``, ``settings``, ``date``.
``<row>.json`` without ``seed``: an early run with a random seed.

``<report>_head_choice/<split>_<mode>_seed<k>.json`` — one trained UNet++ of a semantic report evaluated in one
inference mode (``head-choice``): ``mode``, ``seed``, ``dataset``, ``weights``,
``parameters``, ``eval_seconds``, ``metrics``, ``threads``, ``command``, ``date``.

In a run's OUTPUT_DIR (``<output-root>/<profile>/<model>_seed<k>/`` for ``compare``):
``run.lock`` (held while a process trains the run; the system releases it however the process
ends), ``train_segments.json`` (one entry per process that trained part of the run:
``start_iter``, ``end_iter``, ``wall_s``, ``cpu_s``, ``loadavg_end``) and, for a profile with a
wall-clock budget, ``train_budget.json`` (``minutes``, ``probe_seconds_per_iter``, ``max_iter``,
``steps``, ``warmup_iters``), kept so that a resumed run keeps its schedule. With TEST.BEST_METRIC,
``model_best.pth`` and ``model_best.json`` (the best val score and its iteration, read back on
``--resume``).
"""
import glob
import json
import os

from maskrcnnpp.engine.output_dir import OutputDirInUse, hold_output_dir
from maskrcnnpp.utils.json_io import write_json_atomic

MODEL_ORDER = ("fpn", "nested")


def read_json(path, default=None):
    """The JSON in ``path``; ``default`` when there is no such file."""
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def nuclei_runs_dir(results_dir, profile_name):
    return os.path.join(results_dir, "nuclei_runs", profile_name)


def nuclei_run_path(runs_dir, model, seed):
    return os.path.join(runs_dir, f"{model}_seed{seed}.json")


def write_nuclei_run(runs_dir, record):
    write_json_atomic(nuclei_run_path(runs_dir, record["model"], record["seed"]), record)


def load_nuclei_runs(runs_dir):
    """A folder's runs, FPN before nested, each by seed."""
    runs = [read_json(p) for p in glob.glob(os.path.join(runs_dir, "*_seed*.json"))]
    return in_report_order(runs)


def in_report_order(runs):
    return sorted(runs, key=lambda r: (MODEL_ORDER.index(r["model"]), r["seed"]))


def load_profile_runs(results_dir, profile_name, fpn_runs_from=""):
    """A profile's runs; with ``fpn_runs_from``, its FPN runs are that profile's instead."""
    runs = load_nuclei_runs(nuclei_runs_dir(results_dir, profile_name))
    if not fpn_runs_from:
        return runs
    shared = [r for r in load_nuclei_runs(nuclei_runs_dir(results_dir, fpn_runs_from)) if r["model"] == "fpn"]
    return in_report_order([r for r in runs if r["model"] != "fpn"] + shared)


def load_costs(runs_dir):
    return read_json(os.path.join(runs_dir, "costs.json"))


def write_costs(runs_dir, costs):
    write_json_atomic(os.path.join(runs_dir, "costs.json"), costs)


def train_segments(output_dir):
    """The run's training segments (train_segments.json), [] before any."""
    return read_json(os.path.join(output_dir, "train_segments.json"), [])


def add_train_segment(output_dir, segment):
    """The run's training segments with ``segment`` added (unless it trained no iteration)."""
    segments = train_segments(output_dir)
    if segment["end_iter"] > segment["start_iter"]:
        segments.append(segment)
        write_json_atomic(os.path.join(output_dir, "train_segments.json"), segments)
    return segments


def read_budget(output_dir):
    return read_json(os.path.join(output_dir, "train_budget.json"))


def write_budget(output_dir, budget):
    write_json_atomic(os.path.join(output_dir, "train_budget.json"), budget)


def lock_run(output_dir):
    """Lock a run's OUTPUT_DIR for this process; keep the returned file open while the run trains."""
    return hold_output_dir(output_dir)


def is_locked(output_dir):
    """Whether another live process holds the run's lock."""
    if not os.path.isdir(output_dir):
        return False
    try:
        hold_output_dir(output_dir).close()
    except OutputDirInUse:
        return True
    return False


def semantic_run_path(runs_dir, row, seed):
    return os.path.join(runs_dir, f"{row}_seed{seed}.json")


def load_semantic_runs(runs_dir):
    """({row: {seed: run}}, [runs without a seed]) from the JSONs in ``runs_dir``."""
    seeded, single = {}, []
    for path in sorted(glob.glob(os.path.join(runs_dir, "*.json"))):
        run = read_json(path)
        if "seed" in run:
            seeded.setdefault(run["row"], {})[run["seed"]] = run
        else:
            single.append(run)
    return seeded, single


def head_choice_run_path(runs_dir, split, mode, seed):
    return os.path.join(runs_dir, f"{split}_{mode}_seed{seed}.json")


def load_head_choice_runs(runs_dir):
    """{split: {mode: {seed: run}}} from the JSONs in ``runs_dir``."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*.json"))):
        run = read_json(path)
        split = os.path.basename(path).split("_", 1)[0]
        runs.setdefault(split, {}).setdefault(run["mode"], {})[run["seed"]] = run
    return runs


def write_record(path, record):
    """A semantic or head-choice run record (indented, as they were always written)."""
    write_json_atomic(path, record, indent=2)
