"""The ``prediction-profile`` job: where one image's prediction time goes, from file to label image.

Each image of the dataset is predicted as ``tools/predict.py`` predicts it (the same
``predict_image``), the models taking turns image by image so that load falls on all alike. Every
part's time is exclusive (a part's children are not counted in it), so the parts add up to the
total; the network's parts are split by phase, the passes of the diameter estimate and the final
pass at the working scale. With --score, each label image written is also scored against the
dataset's annotations (fg IoU, DSB mAP, outside the timing): a setting's cost beside its accuracy.
Writes results/prediction_profile_<label>.md.
"""
import contextlib
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
from detectron2.data import DatasetCatalog

import maskrcnnpp.predict.cli as predict_cli
import maskrcnnpp.predict.predictor as predictor_module
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError
from maskrcnnpp.evaluation.nuclei_evaluator import annotated_label_image
from maskrcnnpp.evaluation.nuclei_metrics import dsb_average_precision, foreground_iou_dice
from maskrcnnpp.predict import NucleiPredictor, parse_formats, prepare_output_dir, read_label_image

from ..measure import provenance, publish
from ..tables import row_line, table

FLAGS = ("results-dir", "threads")
DEFAULTS = {"threads": 2}


def add_arguments(parser):
    parser.add_argument("--model", nargs="+", action="append", required=True,
                        metavar="NAME CONFIG WEIGHTS [KEY VALUE]",
                        help="a model to profile, with config overrides of its own; repeat for each model")
    parser.add_argument("--dataset", default="dsb2018_test", help="registered dataset whose images are predicted")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    parser.add_argument("--formats", default="labels", help="outputs written, as predict's --formats")
    parser.add_argument("--label", required=True, help="names the report: prediction_profile_<label>.md")
    parser.add_argument("--score", action="store_true",
                        help="also score each model's label images against the dataset's annotations")


# (part, how it is reached): module attributes wrapped, in maskrcnnpp.predict.cli / .predictor
FUNCTION_PARTS = (
    ("read", predict_cli, "read_image_rgb8"),
    ("estimate (outside the network)", predictor_module, "estimate_diameter"),
    ("size head looks (bottom-up pass and head)", predictor_module, "estimate_by_size_head"),
    ("mask pasting", predictor_module, "paste_masks"),
    ("label image", predict_cli, "build_label_image"),
    ("write labels", predict_cli, "write_label_image"),
    ("overlay", predict_cli, "draw_overlay"),
    ("outlines (ImageJ/QuPath)", predict_cli, "nucleus_polygons"),
    ("write ImageJ", predict_cli, "write_imagej_rois"),
    ("write QuPath", predict_cli, "write_qupath_geojson"),
    ("COCO records", predict_cli, "coco_records"),
)
# (part, path of the submodule of a GeneralizedRCNN)
MODULE_PARTS = (
    ("backbone + neck", "backbone"),
    ("RPN", "proposal_generator"),
    ("box head", "roi_heads.box_pooler"), ("box head", "roi_heads.box_head"), ("box head", "roi_heads.box_predictor"),
    ("mask head", "roi_heads.mask_pooler"), ("mask head", "roi_heads.mask_head"),
    ("ROI heads, other (NMS, boxes)", "roi_heads"),
)
NETWORK = {part for part, _ in MODULE_PARTS}
OTHER = "other (resize, tiles, stitching)"


class PartClock:
    """Exclusive wall and CPU seconds per part: time spent in a part's children is not its own."""

    def __init__(self):
        self.totals = defaultdict(lambda: [0.0, 0.0])
        self.stack = []  # [part, wall start, CPU start, children's wall, children's CPU]
        self.phase = "final"

    @contextlib.contextmanager
    def part(self, name):
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    def enter(self, name):
        self.stack.append([name, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def leave(self):
        name, wall0, cpu0, child_wall, child_cpu = self.stack.pop()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        key = f"{name}, {self.phase} pass" if name in NETWORK else name
        self.totals[key][0] += wall - child_wall
        self.totals[key][1] += cpu - child_cpu
        if self.stack:
            self.stack[-1][3] += wall
            self.stack[-1][4] += cpu


@contextlib.contextmanager
def instrumented(clock, model):
    """Wrap the FUNCTION_PARTS and hook the MODULE_PARTS of ``model`` into ``clock``."""
    originals = []

    def wrap(part, function, phase=None):
        def timed(*args, **kwargs):
            previous = clock.phase
            clock.phase = phase or previous
            try:
                with clock.part(part):
                    return function(*args, **kwargs)
            finally:
                clock.phase = previous
        return timed

    for part, module, name in FUNCTION_PARTS:
        original = getattr(module, name)
        originals.append((module, name, original))
        setattr(module, name, wrap(part, original, "estimate" if name.startswith("estimate_") else None))
    handles = []
    for part, path in MODULE_PARTS:
        submodule = model.get_submodule(path)
        handles.append(submodule.register_forward_pre_hook(lambda m, i, part=part: clock.enter(part)))
        handles.append(submodule.register_forward_hook(lambda m, i, o: clock.leave()))
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
        for handle in handles:
            handle.remove()


def profile_image(predictor, path, layout, clock, image_id=1):
    """Predict one image as tools/predict.py does; returns its total wall and CPU seconds, the
    nuclei found and the label image written (None without the labels format)."""
    with instrumented(clock, predictor.model):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with clock.part(OTHER):
            result = predict_cli.predict_image(predictor, path, "profiled", image_id, layout, None)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, result.num_nuclei, result.label_path


def scores(labels, truth):
    """(fg IoU in percent, DSB mAP) of one predicted label image against the annotated one."""
    return 100.0 * foreground_iou_dice(labels > 0, truth > 0)[0], dsb_average_precision(truth, labels)[0]


def profile(models, paths, formats, warmup=1, records=None):
    """{model name: (PartClock, [(wall, CPU, nuclei, scores or None) per image])}, the models in
    turn per image. ``records``: the images' dataset records, to score the label images against."""
    clocks = {name: PartClock() for name in models}
    totals = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as folder:
        layout = prepare_output_dir(folder, formats)
        for name, predictor in models.items():
            for path in paths[:warmup]:
                profile_image(predictor, path, layout, PartClock())
        for k, path in enumerate(paths):
            truth = annotated_label_image(records[k]) if records else None
            for name, predictor in models.items():
                wall, cpu, nuclei, label_path = profile_image(predictor, path, layout, clocks[name])
                scored = scores(read_label_image(label_path), truth) if truth is not None else None
                totals[name].append((wall, cpu, nuclei, scored))
    return {name: (clocks[name], totals[name]) for name in models}


def render(results, images, command):
    names = list(results)
    parts = sorted({part for clock, _ in results.values() for part in clock.totals},
                   key=lambda p: -max(results[n][0].totals.get(p, (0, 0))[1] for n in names))
    rows = []
    for part in parts:
        cells = [part]
        for n in names:
            clock, totals = results[n]
            wall, cpu = clock.totals.get(part, (0.0, 0.0))
            total_cpu = sum(t[1] for t in totals)
            cells += [f"{1000 * wall / len(totals):.1f}", f"{1000 * cpu / len(totals):.1f}", f"{100 * cpu / total_cpu:.1f}"]
        rows.append(cells)
    total = ["**total per image**"]
    for n in names:
        t = results[n][1]
        total += [f"**{1000 * sum(x[0] for x in t) / len(t):.1f}**", f"**{1000 * sum(x[1] for x in t) / len(t):.1f}**",
                  f"{sum(x[2] for x in t) / len(t):.0f} nuclei"]
    scored = []
    if all(x[3] is not None for n in names for x in results[n][1]):
        scored = [row_line(["fg IoU (%) / DSB mAP, mean over images"] + [
            cell for n in names for cell in (f"{np.mean([x[3][0] for x in results[n][1]]):.2f}",
                                             f"{np.mean([x[3][1] for x in results[n][1]]):.3f}", "")])]
    head = ["part"] + [f"{n} {column}" for n in names for column in ("wall ms", "CPU ms", "CPU %")]
    lines = [
        "# Prediction profile: where one image's time goes",
        "",
        *provenance(command),
        f"- images: {images}; each model predicts each image as `tools/predict.py` does, the models in turn",
        "- times: milliseconds per image, exclusive (a part's children are not in it), so the parts add up",
        "",
    ] + table(head, rows, "l" + "r" * 3 * len(names)) + [row_line(total)] + scored
    return "\n".join(lines) + "\n"


def parse_models(values):
    """[(name, config, weights, overrides)] from the --model arguments; a malformed one raises UserError."""
    models = []
    for value in values:
        if len(value) < 3 or len(value) % 2 == 0:
            raise UserError(f"--model {' '.join(value)}: expected NAME CONFIG WEIGHTS and then KEY VALUE pairs")
        models.append((value[0], value[1], value[2], value[3:]))
    if len({m[0] for m in models}) < len(models):
        raise UserError("--model: two models share a NAME")
    return models


def run(args):
    models = {}
    for name, config, weights, overrides in parse_models(args.model):
        opts = ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"] + list(overrides)
        models[name] = NucleiPredictor(load_cfg(config, opts), config)
    records = DatasetCatalog.get(args.dataset)
    records = records[: args.limit] if args.limit else records
    formats = parse_formats(args.formats)
    if args.score and "labels" not in formats:
        raise UserError(f"--score scores the label images: --formats {args.formats} must include labels")
    results = profile(models, [r["file_name"] for r in records], formats, records=records if args.score else None)
    text = render(results, f"{len(records)} of {args.dataset}, outputs: {args.formats}", args.command)
    publish(text, os.path.join(args.results_dir, f"prediction_profile_{args.label}.md"))
    return 0
