"""16-bit instance label images: 0 background, 1..N nuclei, the format CellProfiler,
napari and StarDist read.

Overlaps are resolved as the DSB2018 metric does (NucleiEvaluator's
``resolve_overlaps``): each pixel goes to the highest-scoring nucleus covering
it. A detection left with no pixel (empty mask, or covered entirely by
higher-scoring ones) is dropped, and the rest are numbered 1..N without gaps in
the order given (decreasing score), so label k is the k-th kept detection.
"""
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..evaluation.nuclei_metrics import resolve_overlaps
from .errors import PredictError

__all__ = ["MAX_LABEL", "build_label_image", "write_label_image", "read_label_image"]

MAX_LABEL = np.iinfo(np.uint16).max


class _FullSizeMasks(Sequence):
    """The detections' masks at full size, each made only when read (resolve_overlaps reads
    them one at a time), so no N x H x W array ever exists."""

    def __init__(self, detections, shape):
        self._detections = detections
        self._shape = shape

    def __len__(self):
        return len(self._detections)

    def __getitem__(self, i):
        return self._detections[i].mask.full(self._shape)


def build_label_image(detections, shape):
    """(H x W uint16 label image, indices of the detections it keeps, in label order)."""
    shape = tuple(shape)
    scores = [d.score for d in detections]
    raw = resolve_overlaps(_FullSizeMasks(detections, shape), scores, shape=shape)  # mask i -> i + 1
    owned = np.bincount(raw.ravel(), minlength=len(detections) + 1)[1:]
    kept = np.flatnonzero(owned)
    if len(kept) > MAX_LABEL:
        raise PredictError(f"{len(kept)} nuclei do not fit a 16-bit label image")
    relabel = np.zeros(len(detections) + 1, dtype=np.uint16)
    relabel[kept + 1] = np.arange(1, len(kept) + 1, dtype=np.uint16)
    return relabel[raw], kept.tolist()


def write_label_image(labels, path):
    """Save as a 16-bit greyscale PNG (Pillow mode I;16)."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint16:
        if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
            raise ValueError("labels must lie in 0..65535")
        labels = labels.astype(np.uint16)
    Image.fromarray(labels).save(path, format="PNG")


def read_label_image(path):
    """A label image written by :func:`write_label_image` (or any 8/16-bit one) as uint16."""
    with Image.open(path) as image:
        labels = np.array(image)
    if labels.ndim != 2:
        raise ValueError(f"{path}: a label image has one channel, this one has shape {labels.shape}")
    return labels.astype(np.uint16)
