"""Training and test augmentations for nuclei images.

INPUT.SCALE_POLICY "image_size": Detectron2's ResizeShortestEdge. "diameter":
:class:`RescaleCropToDiameter`, which needs the image's median nucleus diameter
(an input the mapper provides through :class:`DiameterAugInput`).
"""
import math

import numpy as np
from detectron2.data import transforms as T
from PIL import Image

from ..errors import ConfigError

__all__ = ["DiameterAugInput", "RescaleCropToDiameter", "build_nuclei_augmentation"]


class DiameterAugInput(T.AugInput):
    """An AugInput that also carries the image's median nucleus diameter (original pixels;
    None when unknown), the extra input of :class:`RescaleCropToDiameter`."""

    def __init__(self, image, *, median_diameter=None, boxes=None, sem_seg=None):
        super().__init__(image, boxes=boxes, sem_seg=sem_seg)
        self.median_diameter = median_diameter


class RescaleCropToDiameter(T.Augmentation):
    """Rescale an image so that its median nucleus diameter becomes ``target`` pixels (times a
    factor drawn log-uniformly from ``jitter``), and take a random ``crop_size`` square of it.

    The crop is cut in original pixels first (side ``crop_size / scale``) and only the
    crop is resized, so the cost does not grow with the image's size. An image (or a
    side) smaller than the crop is taken whole. An unknown diameter (None) keeps scale 1.
    """

    input_args = ("image", "median_diameter")

    def __init__(self, target, jitter=(1.0, 1.0), crop_size=256):
        super().__init__()
        self.target = float(target)
        self.jitter = (float(jitter[0]), float(jitter[1]))
        self.crop_size = int(crop_size)

    def __call__(self, aug_input):
        if not hasattr(aug_input, "median_diameter"):
            raise ConfigError(
                "INPUT.SCALE_POLICY='diameter' rescales each training image by its median nucleus "
                "diameter, which Detectron2's DatasetMapper does not provide: map training images "
                "with maskrcnnpp.data.DiameterDatasetMapper (the Trainer's), or set "
                "INPUT.SCALE_POLICY image_size"
            )
        return super().__call__(aug_input)

    def scale_for(self, median_diameter):
        factor = math.exp(np.random.uniform(math.log(self.jitter[0]), math.log(self.jitter[1])))
        base = self.target / median_diameter if median_diameter else 1.0
        return base * factor

    def get_transform(self, image, median_diameter):
        height, width = image.shape[:2]
        scale = self.scale_for(median_diameter)
        side = max(1, int(round(self.crop_size / scale)))
        crop_h, crop_w = min(side, height), min(side, width)
        y0 = int(np.random.randint(0, height - crop_h + 1))
        x0 = int(np.random.randint(0, width - crop_w + 1))
        # A full-side crop becomes exactly crop_size (rounding changes the scale by < 1 %).
        new_h = self.crop_size if crop_h == side else min(self.crop_size, max(1, int(round(crop_h * scale))))
        new_w = self.crop_size if crop_w == side else min(self.crop_size, max(1, int(round(crop_w * scale))))
        return T.TransformList(
            [
                T.CropTransform(x0, y0, crop_w, crop_h, width, height),
                T.ResizeTransform(crop_h, crop_w, new_h, new_w, Image.BILINEAR),
            ]
        )


def _flips(cfg):
    augs = []
    if cfg.INPUT.RANDOM_FLIP in ("horizontal", "vertical"):
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    if cfg.INPUT.VERTICAL_FLIP and cfg.INPUT.RANDOM_FLIP != "vertical":
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    return augs


def build_nuclei_augmentation(cfg, is_train: bool):
    """The resize (+ horizontal flip), plus a vertical flip for training: microscopy has no
    up or down, so it doubles the orientations seen for free.

    With INPUT.SCALE_POLICY "diameter" the test list is empty: images keep their size
    and the predictor rescales them (by --diameter or an estimate) and tiles them.
    """
    if cfg.INPUT.SCALE_POLICY == "diameter":
        if not is_train:
            return []
        rescale = RescaleCropToDiameter(
            cfg.INPUT.NUCLEUS_DIAMETER, cfg.INPUT.DIAMETER_JITTER, cfg.INPUT.DIAMETER_CROP_SIZE
        )
        return [rescale] + _flips(cfg)
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    return augs + _flips(cfg)
