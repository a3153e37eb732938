"""``maskrcnnpp-predict`` / ``tools/predict.py``: the command line and the per-image loop.

For each input image: read it (inputs.py), predict (predictor.py), write the
outputs chosen by ``--formats`` (outputs.py): the overlay, the label image, its
COCO records, an ImageJ/Fiji ROI set and a QuPath GeoJSON (default: all). A failing image is
reported in one line and skipped; the others go on.

``--diameter D`` (or INPUT.SCALE_POLICY diameter, which estimates it per image)
predicts at the working scale in tiles. An image with more than 65,535 nuclei
gets a 32-bit TIFF label image instead of the 16-bit PNG, and the user is told.
"""
import argparse
import contextlib
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from PIL import Image
from tqdm import tqdm

from .. import model_zoo
from ..config_loading import load_cfg
from ..errors import EXIT_USER_ERROR, UserError, debug_enabled
from ..utils.json_io import atomic_write
from .inputs import expand_inputs, output_stems, parse_formats, prepare_output_dir, read_image_rgb8
from .outputs import (
    RESULTS_FILE_NAME,
    CocoResultsWriter,
    build_label_image,
    coco_records,
    draw_overlay,
    nucleus_polygons,
    write_imagej_rois,
    write_label_image,
    write_qupath_geojson,
)
from .predictor import NucleiPredictor, check_diameter

__all__ = [
    "BatchSummary",
    "ImageResult",
    "build_parser",
    "main",
    "predict_batch",
    "predict_image",
    "split_trailing_opts",
]

EXIT_OK, EXIT_SOME_INPUTS_FAILED = 0, 1
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="maskrcnnpp-predict",
        description="Predict nuclei with a trained Mask R-CNN / Mask R-CNN++: per input an overlay PNG, a "
        "16-bit label image, an ImageJ/Fiji ROI set and a QuPath GeoJSON, and one COCO results JSON for "
        "all of them (--formats chooses).",
        epilog="Example: python tools/predict.py --config-file "
        "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml --input images/ --output predictions "
        "MODEL.WEIGHTS output/model_final.pth",
    )
    parser.add_argument("--config-file", metavar="FILE",
                        help="the model's config, with MODEL.WEIGHTS (default: a model of the model zoo, --model)")
    parser.add_argument("--model", metavar="NAME",
                        help="a model of the model zoo by name: its config, and MODEL.WEIGHTS maskrcnnpp://NAME "
                        "(default, without --config-file: the zoo's default model)")
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH",
        help="image files, folders of images and/or glob patterns (quote them)",
    )
    parser.add_argument(
        "--output", metavar="DIR",
        help="output folder (default: OUTPUT_DIR/predictions); gets overlays/, labels/, imagej/, qupath/ "
        "and coco_instances_results.json (those of --formats)",
    )
    parser.add_argument(
        "--formats", default="all", metavar="LIST",
        help="comma-separated outputs to write (default: all): overlay (overlays/<name>.png), labels "
        "(labels/<name>.png, 16-bit label image), coco (coco_instances_results.json), imagej "
        "(imagej/<name>.zip, Fiji ROI Manager set), qupath (qupath/<name>.geojson, QuPath objects)",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=None, metavar="S",
        help="keep nuclei with at least this score (default: the config's TEST.NUCLEI.SCORE_THRESHOLD, "
        "0.5 as in the paper, the threshold evaluation uses)",
    )
    parser.add_argument(
        "--diameter", type=float, default=None, metavar="D",
        help="the nuclei's diameter in the input images' pixels: images are rescaled so that nuclei "
        "have INPUT.NUCLEUS_DIAMETER pixels and predicted in overlapping tiles (default: estimated "
        "per image when INPUT.SCALE_POLICY is diameter, else the config's resize by image size)",
    )
    parser.add_argument(
        "--page", type=int, default=None, metavar="N",
        help="the page to predict in multi-page TIFFs (z-stacks, time series), 1 = the first as in Fiji; "
        "without it a file of several pages is refused",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
        help="config overrides, e.g. MODEL.WEIGHTS model_final.pth MODEL.DEVICE cuda",
    )
    return parser


def split_trailing_opts(inputs, opts):
    """``--input a.png b.png MODEL.WEIGHTS w.pth``: argparse gives the KEY VALUE pairs to --input;
    everything from the first config key on is moved back to the overrides."""
    for i, item in enumerate(inputs):
        if _CONFIG_KEY.match(item):
            return inputs[:i], inputs[i:] + list(opts)
    return inputs, list(opts)


def main(argv=None):
    args = build_parser().parse_args(argv)
    inputs, opts = split_trailing_opts(args.input, args.opts)
    if not inputs:
        print("error: --input names no image", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.score_threshold is not None:
        if not 0.0 <= args.score_threshold <= 1.0:
            print(f"error: --score-threshold {args.score_threshold} is not in [0, 1]", file=sys.stderr)
            return EXIT_USER_ERROR
        opts += ["TEST.NUCLEI.SCORE_THRESHOLD", str(args.score_threshold)]
    if args.diameter is not None:
        try:
            check_diameter(args.diameter, (math.inf, math.inf), option="--diameter")
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
    try:
        formats = parse_formats(args.formats)
        config_file = args.config_file
        if args.model or not config_file:
            if args.model and config_file:
                raise UserError("--model and --config-file name two models: give one of them")
            name = args.model or model_zoo.default_model()
            config_file, opts = model_zoo.config_path(name), ["MODEL.WEIGHTS", model_zoo.PREFIX + name] + opts
        cfg = load_cfg(config_file, opts)
        layout = prepare_output_dir(args.output or os.path.join(cfg.OUTPUT_DIR, "predictions"), formats)
        predictor = NucleiPredictor(cfg, config_file=config_file)
        predictor.progress = not args.no_progress
        summary = predict_batch(predictor, inputs, layout, progress=not args.no_progress, diameter=args.diameter,
                                page=args.page)
    except UserError as e:
        if debug_enabled():
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    written = [os.path.basename(folder) + "/" for folder in layout.folders()]
    written += [os.path.basename(summary.results_json)] if summary.results_json else []
    print(f"{len(summary.images)} image(s), {summary.num_nuclei} nuclei -> {summary.output_dir} ({', '.join(written)})")
    if summary.errors:
        print(f"{len(summary.errors)} input(s) failed, see the errors above", file=sys.stderr)
        return EXIT_SOME_INPUTS_FAILED
    return EXIT_OK


@dataclass
class ImageResult:
    input_path: str
    overlay_path: Optional[str]  # None for a format not written
    label_path: Optional[str]
    num_nuclei: int
    diameter: Optional[float] = None  # nucleus diameter predicted at (None: resized by image size)
    imagej_path: Optional[str] = None
    qupath_path: Optional[str] = None


@dataclass
class BatchSummary:
    output_dir: str
    results_json: Optional[str]  # None when "coco" is not among the formats
    images: List[ImageResult] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    @property
    def num_nuclei(self):
        return sum(r.num_nuclei for r in self.images)


def predict_image(predictor, path, stem, image_id, layout, results_writer, diameter=None, report=None, page=None):
    """Predict one image and write its outputs; memory is released when it returns.

    ``predictor``: a NucleiPredictor, or any callable(image, diameter=, name=, warn=) returning a
    Prediction. ``diameter``: --diameter (None: the predictor's policy). ``page``: --page, the page of a
    multi-page file (None: a file of several pages is refused). ``report`` receives
    one-line warnings (no nucleus to estimate the diameter, a 32-bit label image).
    """
    report = report or (lambda message: print(message, file=sys.stderr))
    warn = lambda message: report(f"warning: {message}")  # noqa: E731
    image = read_image_rgb8(path, page, page_option="--page")
    shape = image.shape[:2]
    if diameter is not None:
        check_diameter(diameter, shape, path, option="--diameter")
    prediction = predictor(image, diameter=diameter, name=path, warn=warn)
    detections = prediction.detections
    labels, kept = build_label_image(detections, shape)
    kept_detections = [detections[i] for i in kept]
    del detections
    formats = layout.formats
    crops = [d.mask for d in kept_detections]
    # Traced once for every output that draws or writes outlines.
    polygons_of = nucleus_polygons(labels, crops) if {"overlay", "imagej", "qupath"} & set(formats) else None
    label_path = overlay_path = imagej_path = qupath_path = None
    if "labels" in formats:
        label_path = write_label_image(labels, layout.label_path(stem))
        if label_path != layout.label_path(stem):
            warn(f"{path}: {len(kept_detections)} nuclei do not fit a 16-bit PNG; the label image is "
                 f"a 32-bit TIFF, {label_path}")
    if "overlay" in formats:
        overlay_path = layout.overlay_path(stem)
        overlay, drawn = draw_overlay(image, labels, crops, polygons_of=polygons_of)
        assert drawn == len(kept_detections), "every labelled nucleus owns pixels, so it is drawn"
        with atomic_write(overlay_path, "wb") as f:
            Image.fromarray(overlay).save(f, format="PNG")
    if "imagej" in formats:
        imagej_path = layout.imagej_path(stem)
        write_imagej_rois(imagej_path, polygons_of)
    if "qupath" in formats:
        qupath_path = layout.qupath_path(stem)
        write_qupath_geojson(qupath_path, polygons_of, [d.score for d in kept_detections])
    if results_writer is not None:
        results_writer.add(coco_records(kept_detections, image_id, path, shape))
    return ImageResult(
        path, overlay_path, label_path, len(kept_detections), prediction.diameter,
        imagej_path, qupath_path,
    )


def predict_batch(predictor, input_specs, layout, progress=True, report=None, diameter=None, page=None):
    """Predict every image named by ``input_specs``; failures are reported and skipped.

    ``report`` receives each one-line error or warning as it happens (default:
    printed to stderr above the progress bar). ``diameter``: --diameter, for every
    image; ``page``: --page, for every multi-page file. Returns a BatchSummary; its ``errors`` lists the inputs that named no
    image or failed.
    """
    report = report or (lambda message: tqdm.write(message, file=sys.stderr))
    write_coco = "coco" in layout.formats
    summary = BatchSummary(layout.root, os.path.join(layout.root, RESULTS_FILE_NAME) if write_coco else None)

    def fail(message):
        summary.errors.append(message)
        report(f"error: {message}")

    paths, input_errors = expand_inputs(input_specs)
    for message in input_errors:
        fail(message)
    with contextlib.ExitStack() as stack:
        writer = None
        if write_coco:
            writer = CocoResultsWriter(stack.enter_context(atomic_write(summary.results_json, "w", encoding="utf-8")))
        bar = tqdm(paths, desc="predict", unit="image", disable=not progress, file=sys.stderr)
        for image_id, (path, stem) in enumerate(zip(bar, output_stems(paths)), start=1):
            try:
                summary.images.append(
                    predict_image(predictor, path, stem, image_id, layout, writer, diameter=diameter, report=report,
                                  page=page)
                )
            except UserError as e:
                fail(str(e))
            except OSError as e:  # writing an output failed (disk full, permissions)
                fail(f"{path}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""))
        if writer is not None:
            writer.finish()
    return summary
