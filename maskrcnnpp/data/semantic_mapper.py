"""Dataset mapper for semantic (foreground / background) nuclei segmentation.

Turns a Detectron2 instance-segmentation record into ``{"image", "sem_seg"}``:
the target is the union of the instance masks. Training samples are random
PATCH_SIZE x PATCH_SIZE crops with random flips (padding smaller images with
the ignore value 255); test samples are whole images without targets (the
evaluator reads the ground truth from the DatasetCatalog).
"""
from typing import List, Optional

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .segmentation import segmentation_to_rle

__all__ = ["SemanticNucleiMapper", "foreground_mask"]

IGNORE_VALUE = 255


def foreground_mask(annotations: List[dict], height: int, width: int) -> np.ndarray:
    """H x W uint8, 1 where any annotation's mask (RLE or polygons) is, else 0."""
    rles = [segmentation_to_rle(a["segmentation"], height, width) for a in annotations]
    if not rles:
        return np.zeros((height, width), dtype=np.uint8)
    mask = mask_util.decode(mask_util.merge(rles, intersect=False))
    if mask.shape != (height, width):
        raise ValueError(f"annotation masks of size {mask.shape} in an image of {(height, width)}")
    return mask


class SemanticNucleiMapper:
    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        image_format: str,
        patch_size: int,
        horizontal_flip: bool = True,
        vertical_flip: bool = True,
    ):
        self.is_train = is_train
        self.image_format = image_format
        self.patch_size = patch_size
        augs = [T.RandomCrop("absolute", (patch_size, patch_size))]
        if horizontal_flip:
            augs.append(T.RandomFlip(horizontal=True, vertical=False))
        if vertical_flip:
            augs.append(T.RandomFlip(horizontal=False, vertical=True))
        self.augmentations = T.AugmentationList(augs)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "patch_size": cfg.MODEL.UNETPP.PATCH_SIZE,
            "horizontal_flip": cfg.INPUT.RANDOM_FLIP == "horizontal",
            "vertical_flip": cfg.INPUT.VERTICAL_FLIP or cfg.INPUT.RANDOM_FLIP == "vertical",
        }

    def __call__(self, record: dict) -> dict:
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        out = {k: record[k] for k in ("file_name", "image_id", "height", "width") if k in record}
        target: Optional[np.ndarray] = None
        if self.is_train:
            target = foreground_mask(record.get("annotations", []), *image.shape[:2])
            aug_input = T.AugInput(image, sem_seg=target)
            self.augmentations(aug_input)
            image, target = self._pad(aug_input.image, aug_input.sem_seg)
            out["sem_seg"] = torch.as_tensor(target.astype(np.int64))
        out["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return out

    def _pad(self, image: np.ndarray, target: np.ndarray):
        """Pad crops of images smaller than the patch: image with 0, target with IGNORE_VALUE."""
        pad_h = self.patch_size - image.shape[0]
        pad_w = self.patch_size - image.shape[1]
        if pad_h <= 0 and pad_w <= 0:
            return image, target
        pad_h, pad_w = max(pad_h, 0), max(pad_w, 0)
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        target = np.pad(target, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_VALUE)
        return image, target
