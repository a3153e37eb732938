"""Command line of tools/predict.py (kept here so that it is importable and testable)."""
import argparse
import os
import re
import sys

from ..engine.setup import load_cfg
from .errors import PredictError
from .output_dir import prepare_output_dir
from .predictor import NucleiPredictor
from .runner import predict_batch

__all__ = ["build_parser", "main", "split_trailing_opts"]

EXIT_OK, EXIT_SOME_INPUTS_FAILED, EXIT_FATAL = 0, 1, 2
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Predict nuclei with a trained Mask R-CNN / Mask R-CNN++: an overlay PNG and a "
        "16-bit label image per input, and one COCO results JSON for all of them.",
        epilog="Example: python tools/predict.py --config-file "
        "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml --input images/ --output predictions "
        "MODEL.WEIGHTS output/model_final.pth",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH",
        help="image files, folders of images and/or glob patterns (quote them)",
    )
    parser.add_argument(
        "--output", metavar="DIR",
        help="output folder (default: OUTPUT_DIR/predictions); gets overlays/, labels/ and "
        "coco_instances_results.json",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=0.5,
        help="keep nuclei with at least this score (default 0.5, the paper's)",
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
        return EXIT_FATAL
    try:
        summary = _run(args, inputs, opts)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    print(
        f"{len(summary.images)} image(s), {summary.num_nuclei} nuclei -> {summary.output_dir} "
        f"(overlays/, labels/, {os.path.basename(summary.results_json)})"
    )
    if summary.errors:
        print(f"{len(summary.errors)} input(s) failed, see the errors above", file=sys.stderr)
        return EXIT_SOME_INPUTS_FAILED
    return EXIT_OK


def _run(args, inputs, opts):
    try:
        cfg = load_cfg(args.config_file, opts)
    except FileNotFoundError as e:
        raise PredictError(str(e)) from None
    except Exception as e:  # yacs: unknown key, odd number of overrides, bad value
        raise PredictError(f"{args.config_file}: bad config or overrides ({e})") from None
    layout = prepare_output_dir(args.output or os.path.join(cfg.OUTPUT_DIR, "predictions"))
    predictor = NucleiPredictor(cfg, args.score_threshold, config_file=args.config_file)
    return predict_batch(predictor, inputs, layout, progress=not args.no_progress)
