"""The ``inference-cost`` job: inference time of a profile's trained models, taking turns image by image.

Each run of ``compare`` times its own evaluation, one model after the other, so a slower minute of
the machine lands on one model only. This loads every trained (model, seed) of a profile (the
``compare`` OUTPUT_DIRs' model_final.pth), takes every k-th image of the profile's test set, and
runs all of them on each image in turn (image 1: fpn seed 0, nested seed 0, fpn seed 1, ...), so
that load falls on every model alike. Inference is the evaluation's (under the diameter policy:
estimate, rescale, tile). Writes results/inference_cost_<profile>.md.

A trained model's time follows the detections it returns and the estimate passes it takes, so the
two models' times differ by more than their necks. --fixed-workload N gives every model the same
work: each image at its annotated diameter and the top N detections kept per tile whatever their
score; it writes inference_cost_<profile>_fixed<N>.md.
"""
import os

import torch
from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import Trainer, load_weights_strictly
from maskrcnnpp.engine.scaled_model import DiameterScaledModel
from maskrcnnpp.errors import UserError

from ..measure import Stopwatch, cpu_model, git_commit, publish
from ..records import load_nuclei_runs, nuclei_runs_dir
from ..stats import mean_std
from ..tables import fmt, table
from .profiles import MODELS, PROFILES
from .runner import DEFAULTS as COMPARE_DEFAULTS
from .runner import build_cfg, run_output_dir

FLAGS = ("results-dir", "output-root", "seeds", "threads")
DEFAULTS = {"output_root": COMPARE_DEFAULTS["output_root"], "threads": 2}


def add_arguments(parser):
    parser.add_argument("--profile", default="cpu-23min", choices=sorted(PROFILES))
    parser.add_argument("--every", type=int, default=5, help="time every k-th test image")
    parser.add_argument("--fixed-workload", type=int, metavar="N",
                        help="every model at the annotated diameters, keeping the top N detections per tile")


def trained_in(profile_name, model_key):
    """The profile whose run of ``model_key`` this profile uses (its own, or fpn_runs_from's)."""
    shared = PROFILES[profile_name].fpn_runs_from
    return shared if model_key == "fpn" and shared else profile_name


def fixed_workload_opts(detections):
    """Overrides under which every model does the same work per image (see the module's doc)."""
    return ["TEST.DIAMETER_SOURCE", "ground_truth", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "TEST.DETECTIONS_PER_IMAGE", str(detections)]


def load_predictor(profile_name, model_key, seed, output_root, opts=()):
    """(cfg, model ready for inference) of one trained ``compare`` run, with ``opts`` (KEY VALUE ...)
    applied over its config."""
    source = trained_in(profile_name, model_key)
    output_dir = run_output_dir(output_root, source, model_key, seed)
    weights = os.path.join(output_dir, "model_final.pth")
    if not os.path.isfile(weights):
        raise UserError(f"{weights}: not found; train it first with python -m benchmarks compare --profile "
                        f"{source} --model {model_key} --seeds {seed}")
    cfg, _ = build_cfg(PROFILES[source], model_key, seed, output_dir, output_root)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    model = Trainer.build_model(cfg)
    load_weights_strictly(model, weights, f"{source}'s {model_key} config")
    if cfg.INPUT.SCALE_POLICY == "diameter":
        model = DiameterScaledModel(cfg, model)
    return cfg, model.eval()


def sample_inputs(cfg, every):
    """Every ``every``-th input (a one-image batch) of cfg's test set, in the loader's order."""
    (dataset,) = cfg.DATASETS.TEST
    return [inputs for k, inputs in enumerate(Trainer.build_test_loader(cfg, dataset)) if k % every == 0]


def time_in_turns(predictors, inputs):
    """{name: [(wall s, CPU s, detections) per input]}: input by input, every predictor in turn.

    predictors: {name: model}; inputs: {name: [batch]} (the same images, as each model's config
    maps them). Each predictor first runs its first input once, untimed (a warm-up).
    """
    for name, model in predictors.items():
        model(inputs[name][0])
    times = {name: [] for name in predictors}
    for k in range(len(next(iter(inputs.values())))):
        for name, model in predictors.items():
            with Stopwatch() as watch:
                outputs = model(inputs[name][k])
            times[name].append((watch.wall, watch.cpu, sum(len(o["instances"]) for o in outputs)))
    return times


def summary(times):
    """{name: (CPU s/image, wall s/image, detections/image)} from time_in_turns' lists."""
    return {name: tuple(sum(t[i] for t in ts) / len(ts) for i in (1, 0, 2)) for name, ts in times.items()}


def paired_percent(per_run, seeds, column=0):
    """[(seed, nested vs FPN in %)] of ``column`` of summary()'s tuples, for the seeds with both."""
    return [(s, 100 * (per_run[("nested", s)][column] / per_run[("fpn", s)][column] - 1))
            for s in seeds if ("nested", s) in per_run and ("fpn", s) in per_run]


def own_cpu_per_image(results_dir, profile_name):
    """{(model, seed): inference CPU s/image that each run measured in its own evaluation}."""
    own = {}
    for model in MODELS:
        for run in load_nuclei_runs(nuclei_runs_dir(results_dir, trained_in(profile_name, model))):
            if run["model"] == model:
                own[(model, run["seed"])] = run["inference_timing"]["cpu_s_per_image"]
    return own


def percent_line(label, pairs):
    per_seed = ", ".join(f"seed {s} {p:+.1f} %" for s, p in pairs)
    return f"- {label}: {fmt(*mean_std([p for _, p in pairs]), decimals=1, sign=True)} % ({per_seed})"


def render(profile_name, per_run, seeds, images, results_dir, command, fixed_detections=None):
    """The markdown report; per_run: {(model key, seed): summary()'s tuple}; fixed_detections:
    the N of --fixed-workload, or None."""
    fixed = fixed_detections is not None
    own = {} if fixed else own_cpu_per_image(results_dir, profile_name)
    rows = [[MODELS[model_key], seed, f"{cpu:.3f}", f"{wall:.3f}", f"{dets:.1f}"]
            + ([] if fixed else [fmt(own.get((model_key, seed)), decimals=3)])
            for (model_key, seed), (cpu, wall, dets) in sorted(per_run.items(), key=lambda item: (item[0][1], item[0][0]))]
    head = ["model", "seed", "CPU s/image", "wall s/image", "detections/image"] + ([] if fixed else ["own run: CPU s/image"])
    lines = [
        f"# Inference cost of `{profile_name}`'s trained models, timed in turns"
        + (f", at a fixed workload ({fixed_detections} detections per tile)" if fixed else ""),
        "",
        f"Every trained run of `{profile_name}` predicts the same {images} test images (every "
        "k-th of the test set), the runs taking turns image by image, after one warm-up image each. "
        "CPU seconds: this process, all threads. Detections: instances returned per image "
        + (f"(each image at its annotated diameter, no estimate; score threshold 0 and at most "
           f"{fixed_detections} per tile, so the models return nearly the same number, which the "
           "column shows, and the network is what differs)." if fixed else
           "(every score the evaluation keeps). \"Own run\": the inference CPU s/image that "
           "the comparison measured in the run's own evaluation (all test images, one model at a time)."),
        "",
    ] + table(head, rows, "l" + "r" * (len(head) - 1))
    lines += ["", "Nested vs FPN, paired by seed (mean ± std over seeds; per seed in brackets):", ""]
    for column, label in ((0, "CPU s/image"), (1, "wall s/image"), (2, "detections/image")):
        pairs = paired_percent(per_run, seeds, column)
        if pairs:
            lines.append(percent_line(label, pairs))
    own_pairs = paired_percent({key: (cpu,) for key, cpu in own.items() if cpu and key in per_run}, seeds)
    if own_pairs:
        lines.append(percent_line("the runs' own CPU s/image", own_pairs))
    lines += [
        "",
        f"- command: `{command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; code {git_commit()}",
        "",
    ]
    return "\n".join(lines)


def run(args):
    if args.every < 1:
        raise UserError(f"--every {args.every}: must be 1 or more")
    if args.fixed_workload is not None and args.fixed_workload < 1:
        raise UserError(f"--fixed-workload {args.fixed_workload}: must be 1 or more detections")
    opts = fixed_workload_opts(args.fixed_workload) if args.fixed_workload else []
    seeds = args.seeds if args.seeds is not None else list(PROFILES[args.profile].seeds)
    setup_logger(name="maskrcnnpp")
    predictors, inputs = {}, {}
    for seed in seeds:
        for model_key in MODELS:
            cfg, predictors[(model_key, seed)] = load_predictor(args.profile, model_key, seed, args.output_root, opts)
            if model_key not in inputs:
                inputs[model_key] = sample_inputs(cfg, args.every)
    per_run = summary(time_in_turns(predictors, {name: inputs[name[0]] for name in predictors}))
    images = len(next(iter(inputs.values())))
    text = render(args.profile, per_run, seeds, images, args.results_dir, args.command, args.fixed_workload)
    suffix = f"_fixed{args.fixed_workload}" if args.fixed_workload else ""
    publish(text, os.path.join(args.results_dir, f"inference_cost_{args.profile}{suffix}.md"))
    return 0
