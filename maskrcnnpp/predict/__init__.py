"""Prediction on new images: overlays, 16-bit label images and a COCO results JSON.

    from maskrcnnpp.predict import NucleiPredictor, predict_batch, prepare_output_dir
    predictor = NucleiPredictor(cfg)                       # cfg.MODEL.WEIGHTS is loaded
    summary = predict_batch(predictor, ["images/"], prepare_output_dir("predictions"))

``tools/predict.py`` is the command-line front end (see ``cli.py``).
"""
from .coco_results import RESULTS_FILE_NAME, CocoResultsWriter, coco_records
from .detections import CroppedMask, Detection, detections_from_raw_instances
from .errors import PredictError
from .image_io import read_image_rgb8, rescale_to_uint8, to_rgb8
from .inputs import expand_inputs, output_stems
from .label_image import build_label_image, read_label_image, write_label_image
from .output_dir import OutputLayout, prepare_output_dir
from .overlay import draw_overlay
from .predictor import NucleiPredictor
from .runner import BatchSummary, ImageResult, predict_batch, predict_image
from .weights import describe_mismatch, load_matching_weights

__all__ = [
    "BatchSummary",
    "CocoResultsWriter",
    "CroppedMask",
    "Detection",
    "ImageResult",
    "NucleiPredictor",
    "OutputLayout",
    "PredictError",
    "RESULTS_FILE_NAME",
    "build_label_image",
    "coco_records",
    "describe_mismatch",
    "detections_from_raw_instances",
    "draw_overlay",
    "expand_inputs",
    "load_matching_weights",
    "output_stems",
    "predict_batch",
    "predict_image",
    "prepare_output_dir",
    "read_image_rgb8",
    "read_label_image",
    "rescale_to_uint8",
    "to_rgb8",
    "write_label_image",
]
