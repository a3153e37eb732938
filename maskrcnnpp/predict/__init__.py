"""Prediction on new images: overlays, 16-bit label images, a COCO results JSON, ImageJ/Fiji ROI
sets and QuPath GeoJSON.

    from maskrcnnpp.predict import NucleiPredictor, predict_batch, prepare_output_dir
    predictor = NucleiPredictor(cfg)                       # cfg.MODEL.WEIGHTS is loaded
    prediction = predictor(rgb_image)                      # .detections, .diameter, .diameter_source, ...
    summary = predict_batch(predictor, ["images/"], prepare_output_dir("predictions"))

Five modules, one per job: ``inputs`` (image paths, reading images, the output
folder), ``predictor`` (the model and its detections, at the working scale when
scaling by nucleus size), ``tiling`` (overlapping tiles and their stitching),
``outputs`` (label image, overlay, COCO JSON, ROI sets, GeoJSON) and ``cli`` (the command line and
the per-image loop).
"""
from .cli import BatchSummary, ImageResult, predict_batch, predict_image
from .inputs import (
    OUTPUT_FORMATS,
    expand_inputs,
    output_stems,
    parse_formats,
    prepare_output_dir,
    read_image_rgb8,
    rescale_to_uint8,
    to_rgb8,
)
from .outputs import (
    RESULTS_FILE_NAME,
    CocoResultsWriter,
    build_label_image,
    coco_records,
    draw_overlay,
    edge_polygons,
    nucleus_polygons,
    read_label_image,
    write_imagej_rois,
    write_label_image,
    write_qupath_geojson,
)
from .predictor import CroppedMask, Detection, NucleiPredictor, Prediction, check_diameter, detections_from_raw_instances
from .tiling import predict_tiled, tile_grid

__all__ = [
    "BatchSummary",
    "CocoResultsWriter",
    "CroppedMask",
    "Detection",
    "ImageResult",
    "NucleiPredictor",
    "Prediction",
    "OUTPUT_FORMATS",
    "RESULTS_FILE_NAME",
    "build_label_image",
    "check_diameter",
    "coco_records",
    "detections_from_raw_instances",
    "draw_overlay",
    "edge_polygons",
    "expand_inputs",
    "nucleus_polygons",
    "output_stems",
    "parse_formats",
    "predict_batch",
    "predict_image",
    "predict_tiled",
    "prepare_output_dir",
    "read_image_rgb8",
    "read_label_image",
    "rescale_to_uint8",
    "tile_grid",
    "to_rgb8",
    "write_imagej_rois",
    "write_label_image",
    "write_qupath_geojson",
]
