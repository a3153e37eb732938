"""The predictor: Mask R-CNN (++) inference on one image at a time, returning memory-lean
detections whose masks are kept as small boolean crops.

Detectron2's own post-processing pastes every mask at full image resolution
into one N x H x W tensor: 400 nuclei in a 2048 x 2048 image would take 1.6 GB.
Here each mask is pasted on its own and only the rectangle it covers is kept,
so memory grows with the nuclei's area, not with N x H x W.
"""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image

from ..data.augmentation import build_nuclei_augmentation
from ..engine.checkpoint import load_weights_strictly
from ..errors import UserError

__all__ = ["CroppedMask", "Detection", "NucleiPredictor", "detections_from_raw_instances"]


@dataclass
class CroppedMask:
    """A boolean mask stored as the rectangle ``bits`` placed at row ``y0``, column ``x0``."""

    y0: int
    x0: int
    bits: np.ndarray  # bool, h x w; 0 x 0 for an empty mask

    @classmethod
    def from_full(cls, mask):
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=bool))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(y0), int(x0), mask[y0:y1, x0:x1].copy())

    @property
    def y1(self):
        return self.y0 + self.bits.shape[0]

    @property
    def x1(self):
        return self.x0 + self.bits.shape[1]

    @property
    def area(self):
        return int(np.count_nonzero(self.bits))

    def full(self, shape):
        """The mask as an H x W boolean array."""
        mask = np.zeros(shape, dtype=bool)
        mask[self.y0 : self.y1, self.x0 : self.x1] = self.bits
        return mask


@dataclass
class Detection:
    box: Tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float
    category_id: int  # 1-based, as in COCO files (Detectron2's class 0 -> 1)
    mask: CroppedMask


def detections_from_raw_instances(
    raw: Instances, image_shape, score_threshold: float, mask_threshold: float = 0.5
) -> List[Detection]:
    """Detections of one image from Detectron2's un-post-processed ROI-head output.

    ``raw`` holds boxes in the resized model input (``raw.image_size``) and
    ``pred_masks`` as N x 1 x M x M probabilities. Boxes are scaled to
    ``image_shape`` (H, W) and clipped, empty boxes dropped, as
    ``detector_postprocess`` does; then each mask is pasted at full resolution
    one at a time and cropped. Sorted by decreasing score.
    """
    height, width = image_shape
    in_height, in_width = raw.image_size
    boxes = Boxes(raw.pred_boxes.tensor.detach().cpu().clone())
    boxes.scale(width / in_width, height / in_height)
    boxes.clip((height, width))
    scores = raw.scores.detach().cpu()
    keep = boxes.nonempty() & (scores >= score_threshold)
    order = torch.argsort(scores[keep], descending=True, stable=True)
    indices = torch.nonzero(keep).flatten()[order]
    probabilities = raw.pred_masks.detach().cpu()
    classes = raw.pred_classes.detach().cpu()

    detections = []
    for i in indices.tolist():
        pasted = paste_masks_in_image(
            probabilities[i : i + 1, 0], boxes[i : i + 1], (height, width), threshold=mask_threshold
        )
        detections.append(
            Detection(
                box=tuple(float(v) for v in boxes.tensor[i]),
                score=float(scores[i]),
                category_id=int(classes[i]) + 1,
                mask=CroppedMask.from_full(pasted[0].numpy()),
            )
        )
    return detections


class NucleiPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` (strictly) and predicts the
    nuclei scoring at least ``cfg.TEST.NUCLEI.SCORE_THRESHOLD``, the evaluator's threshold.

    Like Detectron2's DefaultPredictor, but it takes 8-bit RGB, and it skips
    Detectron2's post-processing so that masks are pasted one at a time
    (see detections.py).
    """

    def __init__(self, cfg, config_file="the config"):
        if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN" or not cfg.MODEL.MASK_ON:
            raise UserError(
                f"{config_file}: prediction needs an instance-segmentation model "
                f"(GeneralizedRCNN with MASK_ON), not {cfg.MODEL.META_ARCHITECTURE}"
            )
        if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE} but no CUDA device is available")
        self.cfg = cfg.clone()
        self.cfg.defrost()
        score_threshold = cfg.TEST.NUCLEI.SCORE_THRESHOLD
        # Cut in the ROI heads, before the mask head: the mask head then runs on the kept
        # boxes only, not on up to DETECTIONS_PER_IMAGE low-scoring ones.
        self.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        self.score_threshold = score_threshold
        self.model = build_model(self.cfg)
        self.model.eval()
        load_weights_strictly(self.model, self.cfg.MODEL.WEIGHTS, config_file)
        self.resize = T.AugmentationList(build_nuclei_augmentation(self.cfg, is_train=False))
        self.input_format = self.cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image_rgb):
        """Detections (sorted by decreasing score) of an H x W x 3 uint8 RGB image."""
        height, width = image_rgb.shape[:2]
        image = convert_PIL_to_numpy(Image.fromarray(image_rgb), self.input_format)
        resized = T.AugInput(image)
        self.resize(resized)
        tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
        inputs = [{"image": tensor, "height": height, "width": width}]
        raw = self.model.inference(inputs, do_postprocess=False)[0]
        return detections_from_raw_instances(raw, (height, width), self.score_threshold)
