"""Mask R-CNN (FPN) vs Mask R-CNN++ (nested FPN) on DSB2018 nuclei, over several seeds.

Each run trains one model from its profile's config with one seed, evaluates it
with NucleiEvaluator on the profile's test split, times inference, and writes
``<results>/nuclei_runs/<profile>/<model>_seed<k>.json``. The report (markdown
and PNG) is rebuilt from whatever run JSONs exist, so runs can be added one at a
time and a killed comparison resumes: finished runs are skipped, an unfinished
one continues from its last Detectron2 checkpoint in its OUTPUT_DIR.
Entry point: tools/compare.py.
"""
import argparse
import datetime
import json
import logging
import os
import shlex
import subprocess
import sys

import torch

import repo_path  # noqa: F401  (this checkout's maskrcnnpp first on sys.path)
from measure import REPO, Stopwatch, count_parameters, detector_gmacs, git_commit, machine_description

import maskrcnnpp  # noqa: E402,F401  (guards and dataset registration before detectron2)

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from maskrcnnpp.engine import Trainer  # noqa: E402
from maskrcnnpp.engine.output_dir import OutputDirInUse  # noqa: E402
from maskrcnnpp.engine.output_dir import hold_output_dir as run_lock  # noqa: E402
from maskrcnnpp.engine.scaled_model import DiameterScaledModel  # noqa: E402
from maskrcnnpp.engine.setup import load_cfg  # noqa: E402
from maskrcnnpp.errors import UserError, run_command  # noqa: E402
from maskrcnnpp.utils.json_io import write_json_atomic  # noqa: E402

import comparison_report  # noqa: E402
import final_report  # noqa: E402
from comparison_profiles import FINAL, FINE_TUNING, MODELS, PROFILES, SCREENS  # noqa: E402
from train_budget import apply_training_budget  # noqa: E402

logger = logging.getLogger("maskrcnnpp.compare")


def run_output_dir(output_root, profile_name, model, seed):
    return os.path.join(output_root, profile_name, f"{model}_seed{seed}")


def run_path(runs_dir, model, seed):
    return os.path.join(runs_dir, f"{model}_seed{seed}.json")


def is_running_elsewhere(output_dir):
    if not os.path.isdir(output_dir):
        return False
    try:
        run_lock(output_dir).close()
    except OutputDirInUse:
        return True
    return False


def start_weights(profile, model, seed, output_root):
    """The model_final.pth a profile with ``weights_from`` starts from (same model and seed)."""
    return os.path.join(run_output_dir(output_root, profile.weights_from, model, seed), "model_final.pth")


def build_cfg(profile, model, seed, output_dir, output_root=None):
    opts = profile.opts_for(model) + ["SEED", str(seed), "OUTPUT_DIR", output_dir]
    if profile.weights_from:
        opts += ["MODEL.WEIGHTS", start_weights(profile, model, seed, output_root or os.path.dirname(
            os.path.dirname(output_dir)))]
    return load_cfg(os.path.join(REPO, profile.configs[model]), opts), opts


def train(cfg):
    """Train (resuming from OUTPUT_DIR's last checkpoint); returns the trainer and this segment's timing."""
    seed_all_rng(cfg.SEED)  # same data order and augmentation draws for both models
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    start_iter = trainer.start_iter
    watch = Stopwatch(cfg.MODEL.DEVICE)
    with watch:
        trainer.train()
    segment = {"start_iter": start_iter, "end_iter": cfg.SOLVER.MAX_ITER,
               "wall_s": watch.wall, "cpu_s": watch.cpu, "loadavg_end": os.getloadavg()}
    return trainer, segment


def train_timing(output_dir, segment):
    """Timing over all the process segments that trained this run (a resumed run has several)."""
    path = os.path.join(output_dir, "train_segments.json")
    segments = []
    if os.path.isfile(path):
        with open(path) as f:
            segments = json.load(f)
    if segment["end_iter"] > segment["start_iter"]:
        segments.append(segment)
        write_json_atomic(path, segments)
    iters = sum(s["end_iter"] - s["start_iter"] for s in segments)
    return {
        "iterations_timed": iters,
        "wall_s": sum(s["wall_s"] for s in segments),
        "cpu_s": sum(s["cpu_s"] for s in segments),
        "wall_s_per_iter": sum(s["wall_s"] for s in segments) / iters if iters else None,
        "cpu_s_per_iter": sum(s["cpu_s"] for s in segments) / iters if iters else None,
        "segments": segments,
    }


def evaluate(cfg, model, dataset):
    """NucleiEvaluator results on ``dataset``, and inference timing (model forward only).

    Under INPUT.SCALE_POLICY diameter the model is wrapped as Trainer.test wraps it
    (rescaled to the working diameter, tiled; the diameter estimated unless
    TEST.DIAMETER_SOURCE is ground_truth). The first two images are a warm-up, left
    out of the timing.
    """
    if cfg.INPUT.SCALE_POLICY == "diameter":
        model = DiameterScaledModel(cfg, model)
    loader = Trainer.build_test_loader(cfg, dataset)
    evaluator = Trainer.build_evaluator(cfg, dataset, os.path.join(cfg.OUTPUT_DIR, "inference", dataset))
    evaluator.reset()
    watch, images, first_image = Stopwatch(cfg.MODEL.DEVICE), 0, None
    model.eval()
    with torch.no_grad():
        for k, inputs in enumerate(loader):
            if first_image is None:
                first_image = inputs[0]["image"]
            if k < 2:
                outputs = model(inputs)
            else:
                with watch:
                    outputs = model(inputs)
                images += len(inputs)
            evaluator.process(inputs, outputs)
    results = evaluator.evaluate()
    if isinstance(model, DiameterScaledModel):
        results = dict(results, diameters=[
            {"file_name": name, "diameter": d, "source": source} for name, d, source in model.diameters
        ])
    timing = {
        "images_timed": images,
        "wall_s_per_image": watch.wall / images if images else None,
        "cpu_s_per_image": watch.cpu / images if images else None,
        "images_per_s": images / watch.wall if images and watch.wall else None,
    }
    return results, timing, first_image


def per_image_records(output_dir, dataset, diameters=None):
    """Per-image metrics; under the diameter policy also the diameter used and the annotated one."""
    with open(os.path.join(output_dir, "inference", dataset, "nuclei_metrics.json")) as f:
        images = json.load(f)["images"]
    keep = ("image_id", "height", "width", "modality", "num_gt", "num_pred",
            "fg_iou", "fg_dice", "dsb_map")
    records = [{k: r.get(k) for k in keep} for r in images]
    if diameters:
        used = {d["file_name"]: d for d in diameters}
        truth = {r["image_id"]: r for r in DatasetCatalog.get(dataset)}
        for record in records:
            image = truth[record["image_id"]]
            record["gt_diameter"] = image.get("median_diameter")
            record["diameter"] = used[image["file_name"]]["diameter"]
            record["diameter_source"] = used[image["file_name"]]["source"]
    return records


def scale_policy(cfg):
    """The scale policy a run used, as the run JSON records it."""
    if cfg.INPUT.SCALE_POLICY != "diameter":
        return {"policy": "image_size", "min_size_train": list(cfg.INPUT.MIN_SIZE_TRAIN),
                "max_size_train": cfg.INPUT.MAX_SIZE_TRAIN, "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
                "max_size_test": cfg.INPUT.MAX_SIZE_TEST}
    return {"policy": "diameter", "nucleus_diameter": cfg.INPUT.NUCLEUS_DIAMETER,
            "jitter": list(cfg.INPUT.DIAMETER_JITTER), "crop_size": cfg.INPUT.DIAMETER_CROP_SIZE,
            "tile_size": cfg.TEST.TILE_SIZE, "tile_overlap": cfg.TEST.TILE_OVERLAP,
            "default_diameter": cfg.TEST.DEFAULT_DIAMETER, "diameter_source": cfg.TEST.DIAMETER_SOURCE}


def run_one(profile_name, model_key, seed, runs_dir, output_root, command):
    """Train, evaluate and time one (model, seed); write its run JSON atomically."""
    profile = PROFILES[profile_name]
    output_dir = run_output_dir(output_root, profile_name, model_key, seed)
    # Held until this process exits: two comparison processes never train the same run.
    lock = run_lock(output_dir)  # noqa: F841
    cfg, opts = build_cfg(profile, model_key, seed, output_dir, output_root)
    if profile.weights_from and not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise UserError(f"{profile_name} {model_key} seed {seed} starts from {cfg.MODEL.WEIGHTS}, which does "
                        f"not exist yet: run tools/compare.py --profile {profile.weights_from} --model "
                        f"{model_key} --seed {seed} first")
    budget = apply_training_budget(cfg, profile.train_minutes, output_dir) if profile.train_minutes else None
    (test_set,) = cfg.DATASETS.TEST
    cfg.DATASETS.TEST = ()  # no evaluation hook in training: evaluated below, timed on its own
    cfg.freeze()
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    logger.info("comparison %s: training %s seed %d in %s", profile_name, model_key, seed, output_dir)

    trainer, segment = train(cfg)
    timing = train_timing(output_dir, segment)
    model = trainer.model
    results, inference, first_image = evaluate(cfg, model, test_set)
    diameters = results.pop("diameters", None)
    oracle = None
    if cfg.INPUT.SCALE_POLICY == "diameter":  # the upper bound: each image at its annotated diameter
        oracle_cfg = cfg.clone()
        oracle_cfg.defrost()
        oracle_cfg.TEST.DIAMETER_SOURCE, oracle_cfg.TEST.NUCLEI.COCO_AP = "ground_truth", False
        oracle_cfg.OUTPUT_DIR = os.path.join(output_dir, "oracle_scale")
        oracle = evaluate(oracle_cfg, model, test_set)[0]["nuclei"]
    image = torch.nn.functional.interpolate(
        first_image[None].float(), size=(profile.test_size,) * 2, mode="bilinear")[0]
    gmacs_total, gmacs_backbone, detections = detector_gmacs(model, image.to(cfg.MODEL.DEVICE))

    record = {
        "profile": profile_name,
        "model": model_key,
        "model_name": MODELS[model_key],
        "seed": seed,
        "config": profile.configs[model_key],
        "overrides": opts,
        "test_set": test_set,
        "scale_policy": scale_policy(cfg),
        "max_iter": cfg.SOLVER.MAX_ITER,
        "train_budget": budget,
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "metrics": {k: dict(v) for k, v in results.items()},
        "per_image": per_image_records(output_dir, test_set, diameters),
        "oracle_scale_metrics": oracle,
        "parameters": count_parameters(model),
        "gflops": {"input": [3, profile.test_size, profile.test_size],
                   "whole_model": gmacs_total, "backbone_and_neck": gmacs_backbone,
                   "detections": detections},
        "train_timing": timing,
        "inference_timing": inference,
        "command": command,
        "git_commit": git_commit(),
        "machine": machine_description(cfg.MODEL.DEVICE),
        "loadavg_at_end": os.getloadavg(),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "config_yaml": cfg.dump(),
    }
    write_json_atomic(run_path(runs_dir, model_key, seed), record)
    logger.info("comparison %s: %s seed %d done: %s", profile_name, model_key, seed,
                results.get("nuclei"))
    return record


def model_costs(profile):
    """Parameters and fvcore GFLOPs of each model at the profile's test size, independent of training.

    The whole-model count runs the box and mask heads on as many detections as the
    config allows (score threshold 0), so it does not depend on what a trained model finds.
    """
    size = profile.test_size
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    costs = {"input": [3, size, size], "models": {}}
    for model_key, config in profile.configs.items():
        opts = profile.opts_for(model_key) + ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
        cfg = load_cfg(os.path.join(REPO, config), opts)
        torch.manual_seed(0)
        model = build_model(cfg)
        total, backbone, detections = detector_gmacs(model, image)
        costs["models"][model_key] = {"parameters": count_parameters(model), "gflops_whole": total,
                                      "gflops_backbone_and_neck": backbone, "detections": detections}
    return costs


def ensure_costs(runs_dir, profile):
    path = os.path.join(runs_dir, "costs.json")
    if not os.path.isfile(path):
        write_json_atomic(path, model_costs(profile))


def planned_runs(models, seeds):
    """Paired seeds first: fpn 0, nested 0, fpn 1, nested 1, ..."""
    return [(m, s) for s in seeds for m in models]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=list(PROFILES))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the profile's seeds")
    parser.add_argument("--seed", type=int, help="a single seed (same as --seeds K)")
    parser.add_argument("--model", default="both", choices=["fpn", "nested", "both"])
    parser.add_argument("--render-only", action="store_true", help="rebuild the report from the run JSONs")
    parser.add_argument("--in-process", action="store_true",
                        help="run every pending run in this process (default: one subprocess each, "
                             "unless only one run is pending)")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument("--output-root", default=os.path.join(REPO, "output", "compare"))
    # A run started by the comparison records the comparison's command, not its own.
    parser.add_argument("--recorded-command", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed is not None:
        args.seeds = [args.seed]
    if args.seeds is None:
        args.seeds = list(PROFILES[args.profile].seeds)
    return args


def command_line(argv):
    env = f"DETECTRON2_DATASETS={os.environ.get('DETECTRON2_DATASETS', 'datasets')} "
    if "OMP_NUM_THREADS" in os.environ:
        env += f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} "
    return env + "python tools/compare.py " + " ".join(shlex.quote(a) for a in argv)


def runs_dir_of(args):
    return os.path.join(args.results_dir, "nuclei_runs", args.profile)


def render(args, command):
    profile = PROFILES[args.profile]
    shared = (os.path.join(args.results_dir, "nuclei_runs", profile.fpn_runs_from)
              if profile.fpn_runs_from else None)
    comparison_report.write_report(args.profile, profile, runs_dir_of(args), shared,
                                   args.results_dir, command)
    for name, screen in SCREENS.items():
        if args.profile in screen["profiles"]:
            comparison_report.render_screen(name, screen, PROFILES, args.results_dir)
    if args.profile in (p for _, p in FINE_TUNING["rows"]):
        comparison_report.render_fine_tuning(FINE_TUNING, args.results_dir)
    final_profiles = {p for _, p in FINAL["rows"]} | {PROFILES[p].fpn_runs_from for _, p in FINAL["rows"]}
    if args.profile in final_profiles:
        final_report.render_final(FINAL, args.results_dir, PROFILES)


def main(argv=None):
    return run_command(compare, argv)


def compare(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = args.recorded_command or command_line(argv)
    if args.render_only:
        render(args, command)
        return 0
    ensure_costs(runs_dir_of(args), PROFILES[args.profile])
    setup_logger(name="detectron2")
    setup_logger(name="maskrcnnpp")
    models = list(MODELS) if args.model == "both" else [args.model]
    if PROFILES[args.profile].fpn_runs_from:
        models = [m for m in models if m != "fpn"]
    runs_dir = runs_dir_of(args)
    plan = planned_runs(models, args.seeds)
    failures = 0
    for model, seed in plan:
        # Checked just before each run: another comparison process may share this plan.
        if os.path.isfile(run_path(runs_dir, model, seed)):
            logger.info("comparison %s: %s seed %d already finished, skipped", args.profile, model, seed)
            continue
        if is_running_elsewhere(run_output_dir(args.output_root, args.profile, model, seed)):
            logger.info("comparison %s: %s seed %d is being run by another process, skipped",
                        args.profile, model, seed)
            continue
        if args.in_process or len(plan) == 1:
            run_one(args.profile, model, seed, runs_dir, args.output_root, command)
        else:
            # A fresh process per run: its memory and Detectron2's global state go with it.
            child = [sys.executable, os.path.join(REPO, "tools", "compare.py"),
                     "--profile", args.profile, "--model", model, "--seed", str(seed),
                     "--in-process", "--results-dir", args.results_dir,
                     "--output-root", args.output_root, "--recorded-command", command]
            if subprocess.run(child).returncode != 0:
                logger.error("comparison %s: %s seed %d failed", args.profile, model, seed)
                failures += 1
                continue
        render(args, command)
    render(args, command)
    return 1 if failures else 0
