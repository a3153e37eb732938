"""The batch: every input image through the predictor into overlay, label image and JSON."""
import os
import sys
from dataclasses import dataclass, field
from typing import List

from PIL import Image
from tqdm import tqdm

from .coco_results import RESULTS_FILE_NAME, CocoResultsWriter, coco_records
from .errors import PredictError
from .image_io import read_image_rgb8
from .inputs import expand_inputs, output_stems
from .label_image import build_label_image, write_label_image
from .overlay import draw_overlay

__all__ = ["ImageResult", "BatchSummary", "predict_image", "predict_batch"]


@dataclass
class ImageResult:
    input_path: str
    overlay_path: str
    label_path: str
    num_nuclei: int


@dataclass
class BatchSummary:
    output_dir: str
    results_json: str
    images: List[ImageResult] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    @property
    def num_nuclei(self):
        return sum(r.num_nuclei for r in self.images)


def predict_image(predictor, path, stem, image_id, layout, results_writer):
    """Predict one image and write its outputs; memory is released when it returns."""
    image = read_image_rgb8(path)
    shape = image.shape[:2]
    detections = predictor(image)
    labels, kept = build_label_image(detections, shape)
    kept_detections = [detections[i] for i in kept]
    del detections
    label_path, overlay_path = layout.label_path(stem), layout.overlay_path(stem)
    write_label_image(labels, label_path)
    overlay, drawn = draw_overlay(image, labels, [d.mask for d in kept_detections])
    assert drawn == len(kept_detections), "every labelled nucleus owns pixels, so it is drawn"
    Image.fromarray(overlay).save(overlay_path, format="PNG")
    results_writer.add(coco_records(kept_detections, image_id, path, shape))
    return ImageResult(path, overlay_path, label_path, len(kept_detections))


def predict_batch(predictor, input_specs, layout, progress=True, report=None):
    """Predict every image named by ``input_specs``; failures are reported and skipped.

    ``report`` receives each one-line error as it happens (default: printed to
    stderr above the progress bar). Returns a BatchSummary; its ``errors`` lists
    the inputs that named no image or failed.
    """
    report = report or (lambda message: tqdm.write(message, file=sys.stderr))
    summary = BatchSummary(layout.root, os.path.join(layout.root, RESULTS_FILE_NAME))

    def fail(message):
        summary.errors.append(message)
        report(f"error: {message}")

    paths, input_errors = expand_inputs(input_specs)
    for message in input_errors:
        fail(message)
    with CocoResultsWriter(summary.results_json) as writer:
        bar = tqdm(paths, desc="predict", unit="image", disable=not progress, file=sys.stderr)
        for image_id, (path, stem) in enumerate(zip(bar, output_stems(paths)), start=1):
            try:
                summary.images.append(predict_image(predictor, path, stem, image_id, layout, writer))
            except PredictError as e:
                fail(str(e))
            except OSError as e:  # writing an output failed (disk full, permissions)
                fail(f"{path}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""))
    return summary
