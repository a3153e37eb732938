"""The ``compare`` job: Mask R-CNN (FPN) vs Mask R-CNN++ (nested FPN) on DSB2018 nuclei, over seeds.

Each run trains one model of a profile with one seed, evaluates it on the profile's test split
through ``Trainer.test`` (timing the model's forward), and writes its run record (records.py).
The reports are rebuilt from whatever records exist, so runs can be added a few at a time and a
killed comparison resumes: finished runs are skipped, an unfinished one continues from its last
checkpoint in its OUTPUT_DIR.
"""
import argparse
import datetime
import json
import logging
import multiprocessing
import os

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError, run_command

from ..measure import REPO, Stopwatch, count_parameters, detector_gflops, git_commit, machine_description
from ..records import (
    add_train_segment, is_locked, load_costs, lock_run, nuclei_run_path, nuclei_runs_dir, write_costs,
    write_nuclei_run,
)
from .budget import apply_training_budget
from .profiles import MODELS, PROFILES
from .report import write_report
from .summaries import summaries_of

FLAGS = ("results-dir", "output-root", "seeds", "render-only")
DEFAULTS = {"output_root": os.path.join(REPO, "output", "compare")}
WARMUP_BATCHES = 2  # test batches (one image each) run before the inference timing starts
logger = logging.getLogger("maskrcnnpp.compare")


def add_arguments(parser):
    parser.add_argument("--profile", required=True, choices=list(PROFILES))
    parser.add_argument("--model", default="both", choices=["fpn", "nested", "both"])
    parser.add_argument("--in-process", action="store_true",
                        help="run every pending run in this process (default: a fresh process each, "
                             "unless only one run is pending)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "profiles:\n" + "\n".join(f"  {name}: {p.purpose}" for name, p in PROFILES.items())


def run_output_dir(output_root, profile_name, model, seed):
    return os.path.join(output_root, profile_name, f"{model}_seed{seed}")


def build_cfg(profile, model, seed, output_dir, output_root=None):
    """A run's config and the overrides it applied (the profile's, the seed, OUTPUT_DIR and, for
    a profile that starts from another's models, MODEL.WEIGHTS)."""
    opts = profile.opts_for(model) + ["SEED", str(seed), "OUTPUT_DIR", output_dir]
    if profile.weights_from:
        root = output_root or os.path.dirname(os.path.dirname(output_dir))
        opts += ["MODEL.WEIGHTS", os.path.join(run_output_dir(root, profile.weights_from, model, seed), "model_final.pth")]
    return load_cfg(os.path.join(REPO, profile.configs[model]), opts), opts


def train(cfg):
    """Train (resuming from OUTPUT_DIR's last checkpoint); returns the trainer and this process' segment."""
    seed_all_rng(cfg.SEED)  # same data order and augmentation draws for both models
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    start_iter = trainer.start_iter
    with Stopwatch(cfg.MODEL.DEVICE) as watch:
        trainer.train()
    segment = {"start_iter": start_iter, "end_iter": cfg.SOLVER.MAX_ITER,
               "wall_s": watch.wall, "cpu_s": watch.cpu, "loadavg_end": os.getloadavg()}
    return trainer, segment


def train_timing(output_dir, segment):
    """Timing over all the process segments that trained this run (a resumed run has several)."""
    segments = add_train_segment(output_dir, segment)
    iters = sum(s["end_iter"] - s["start_iter"] for s in segments)
    wall, cpu = sum(s["wall_s"] for s in segments), sum(s["cpu_s"] for s in segments)
    return {"iterations_timed": iters, "wall_s": wall, "cpu_s": cpu,
            "wall_s_per_iter": wall / iters if iters else None, "cpu_s_per_iter": cpu / iters if iters else None,
            "segments": segments}


class ForwardTimer(DatasetEvaluator):
    """Beside the evaluator in ``Trainer.test``: times the model's forward (from the loader handing
    a batch over to the evaluators receiving its outputs, which is all ``inference_on_dataset``
    does in between) after WARMUP_BATCHES, keeps the first image (GFLOPs are counted on it) and
    the diameter each image was predicted at."""

    def __init__(self, device):
        self.watch, self.batches, self.images = Stopwatch(device), 0, 0
        self.first_image, self.diameters = None, {}

    def handing(self, loader):
        timer = self

        class Handing:
            def __len__(self):
                return len(loader)

            def __iter__(self):
                for inputs in loader:
                    if timer.first_image is None:
                        timer.first_image = inputs[0]["image"]
                    timer.watch.start()
                    yield inputs
        return Handing()

    def process(self, inputs, outputs):
        self.batches += 1
        self.watch.stop(keep=self.batches > WARMUP_BATCHES)
        self.images += len(inputs) if self.batches > WARMUP_BATCHES else 0
        for item, output in zip(inputs, outputs):
            if "diameter" in output:
                self.diameters[item["file_name"]] = (output["diameter"], output["diameter_source"])

    def evaluate(self):
        return None

    def timing(self):
        wall, cpu, images = self.watch.wall, self.watch.cpu, self.images
        return {"images_timed": images, "wall_s_per_image": wall / images if images else None,
                "cpu_s_per_image": cpu / images if images else None,
                "images_per_s": images / wall if images and wall else None}


def evaluate(cfg, model, dataset):
    """``Trainer.test`` of ``model`` on ``dataset`` with the evaluator Trainer builds; returns its
    results and the ForwardTimer."""
    timer = ForwardTimer(cfg.MODEL.DEVICE)

    class TimedTrainer(Trainer):
        @classmethod
        def build_test_loader(cls, cfg, dataset_name):
            return timer.handing(Trainer.build_test_loader(cfg, dataset_name))

    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (dataset,)
    cfg.freeze()
    evaluator = DatasetEvaluators([Trainer.build_evaluator(cfg, dataset), timer])
    return TimedTrainer.test(cfg, model, [evaluator]), timer


def per_image_records(output_dir, dataset, diameters):
    """Per-image metrics; under the diameter policy also the diameter used and the annotated one."""
    with open(os.path.join(output_dir, "inference", dataset, "nuclei_metrics.json")) as f:
        images = json.load(f)["images"]
    keep = ("image_id", "height", "width", "modality", "num_gt", "num_pred", "fg_iou", "fg_dice", "dsb_map")
    records = [{k: r.get(k) for k in keep} for r in images]
    if diameters:
        truth = {r["image_id"]: r for r in DatasetCatalog.get(dataset)}
        for record in records:
            image = truth[record["image_id"]]
            record["gt_diameter"] = image.get("median_diameter")
            record["diameter"], record["diameter_source"] = diameters[image["file_name"]]
    return records


def scale_policy(cfg):
    """The scale policy a run used, as the run record holds it."""
    if cfg.INPUT.SCALE_POLICY != "diameter":
        return {"policy": "image_size", "min_size_train": list(cfg.INPUT.MIN_SIZE_TRAIN),
                "max_size_train": cfg.INPUT.MAX_SIZE_TRAIN, "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
                "max_size_test": cfg.INPUT.MAX_SIZE_TEST}
    return {"policy": "diameter", "nucleus_diameter": cfg.INPUT.NUCLEUS_DIAMETER,
            "jitter": list(cfg.INPUT.DIAMETER_JITTER), "crop_size": cfg.INPUT.DIAMETER_CROP_SIZE,
            "tile_size": cfg.TEST.TILE_SIZE, "tile_overlap": cfg.TEST.TILE_OVERLAP,
            "default_diameter": cfg.TEST.DEFAULT_DIAMETER, "diameter_source": cfg.TEST.DIAMETER_SOURCE}


def run_one(profile_name, model_key, seed, runs_dir, output_root, command):
    """Train, evaluate and time one (model, seed); write its run record."""
    profile = PROFILES[profile_name]
    output_dir = run_output_dir(output_root, profile_name, model_key, seed)
    lock = lock_run(output_dir)  # noqa: F841  (held until this process exits)
    cfg, opts = build_cfg(profile, model_key, seed, output_dir, output_root)
    if profile.weights_from and not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise UserError(f"{profile_name} {model_key} seed {seed} starts from {cfg.MODEL.WEIGHTS}, which does "
                        f"not exist yet: run python -m benchmarks compare --profile {profile.weights_from} "
                        f"--model {model_key} --seeds {seed} first")
    budget = apply_training_budget(cfg, profile.train_minutes, output_dir) if profile.train_minutes else None
    (test_set,) = cfg.DATASETS.TEST
    cfg.DATASETS.TEST = ()  # no evaluation hook in training: evaluated below, timed on its own
    cfg.freeze()
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    logger.info("comparison %s: training %s seed %d in %s", profile_name, model_key, seed, output_dir)

    trainer, segment = train(cfg)
    timing = train_timing(output_dir, segment)
    model = trainer.model
    results, timer = evaluate(cfg, model, test_set)
    oracle = None
    if cfg.INPUT.SCALE_POLICY == "diameter":  # the upper bound: each image at its annotated diameter
        oracle_cfg = cfg.clone()
        oracle_cfg.defrost()
        oracle_cfg.TEST.DIAMETER_SOURCE, oracle_cfg.TEST.NUCLEI.COCO_AP = "ground_truth", False
        oracle_cfg.OUTPUT_DIR = os.path.join(output_dir, "oracle_scale")
        oracle = evaluate(oracle_cfg, model, test_set)[0]["nuclei"]
    image = torch.nn.functional.interpolate(
        timer.first_image[None].float(), size=(profile.test_size,) * 2, mode="bilinear")[0]
    gflops_total, gflops_backbone, detections = detector_gflops(model, image.to(cfg.MODEL.DEVICE))

    record = {
        "profile": profile_name, "model": model_key, "model_name": MODELS[model_key], "seed": seed,
        "config": profile.configs[model_key], "overrides": opts, "test_set": test_set,
        "scale_policy": scale_policy(cfg), "max_iter": cfg.SOLVER.MAX_ITER, "train_budget": budget,
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "metrics": {k: dict(v) for k, v in results.items()},
        "per_image": per_image_records(output_dir, test_set, timer.diameters),
        "oracle_scale_metrics": oracle,
        "parameters": count_parameters(model),
        "gflops": {"input": [3, profile.test_size, profile.test_size], "whole_model": gflops_total,
                   "backbone_and_neck": gflops_backbone, "detections": detections},
        "train_timing": timing, "inference_timing": timer.timing(),
        "command": command, "git_commit": git_commit(), "machine": machine_description(cfg.MODEL.DEVICE),
        "loadavg_at_end": os.getloadavg(),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "config_yaml": cfg.dump(),
    }
    write_nuclei_run(runs_dir, record)
    logger.info("comparison %s: %s seed %d done: %s", profile_name, model_key, seed, results.get("nuclei"))
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
        torch.manual_seed(0)
        model = build_model(load_cfg(os.path.join(REPO, config), opts))
        total, backbone, detections = detector_gflops(model, image)
        costs["models"][model_key] = {"parameters": count_parameters(model), "gflops_whole": total,
                                      "gflops_backbone_and_neck": backbone, "detections": detections}
    return costs


def write_reports(profile_name, results_dir):
    """The profile's report and every summary table its runs appear in."""
    write_report(profile_name, PROFILES[profile_name], results_dir)
    for render, spec in summaries_of(profile_name):
        render(spec, results_dir)


def run_in_fresh_process(*run_args, target=None):
    """``run_one`` (or ``target``) in a spawned process (its memory and Detectron2's global state
    go with it); returns its exit code."""
    process = multiprocessing.get_context("spawn").Process(
        target=_run_child, args=(multiprocessing.get_start_method(), target or run_one, *run_args))
    process.start()
    process.join()
    return process.exitcode


def _run_child(start_method, target, *run_args):
    # A spawned process starts its own children by spawning too; its DataLoader workers would then
    # unpickle Detectron2's objects before maskrcnnpp's guards are installed. Start them as the
    # parent would (fork on Linux: they inherit the guards).
    multiprocessing.set_start_method(start_method, force=True)
    setup_logger(name="detectron2")
    setup_logger(name="maskrcnnpp")
    run_command(target, *run_args)


def run(args):
    profile = PROFILES[args.profile]
    runs_dir = nuclei_runs_dir(args.results_dir, args.profile)
    if args.render_only:
        write_reports(args.profile, args.results_dir)
        return 0
    if load_costs(runs_dir) is None:
        write_costs(runs_dir, model_costs(profile))
    setup_logger(name="detectron2")
    setup_logger(name="maskrcnnpp")
    models = list(MODELS) if args.model == "both" else [args.model]
    if profile.fpn_runs_from:
        models = [m for m in models if m != "fpn"]
    plan = [(m, s) for s in (args.seeds or profile.seeds) for m in models]  # paired seeds first
    finished = failures = 0
    for model, seed in plan:
        # Checked just before each run: another comparison process may share this plan.
        if os.path.isfile(nuclei_run_path(runs_dir, model, seed)):
            logger.info("comparison %s: %s seed %d already finished, skipped", args.profile, model, seed)
            continue
        if is_locked(run_output_dir(args.output_root, args.profile, model, seed)):
            logger.info("comparison %s: %s seed %d is being run by another process, skipped",
                        args.profile, model, seed)
            continue
        run_args = (args.profile, model, seed, runs_dir, args.output_root, args.command)
        if args.in_process or len(plan) == 1:
            run_one(*run_args)
        elif run_in_fresh_process(*run_args) != 0:
            logger.error("comparison %s: %s seed %d failed", args.profile, model, seed)
            failures += 1
            continue
        finished += 1
        write_reports(args.profile, args.results_dir)
    if not finished:
        write_reports(args.profile, args.results_dir)
    return 1 if failures else 0
