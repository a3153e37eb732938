"""Predicted masks kept as crops, read by the evaluators as if they were an N x H x W array.

A full-size boolean mask per nucleus would take N x H x W bytes (400 nuclei of a 2048 x 2048
image: 1.6 GB). Detectron2's COCOEvaluator reads ``instances.pred_masks`` one mask at a time
(to encode each as RLE), and the nuclei evaluator paints the crops themselves, so a
:class:`CroppedMaskStack` makes one full-size mask at a time, only when it is read.
"""
import numpy as np
import torch

__all__ = ["CroppedMaskStack"]


class CroppedMaskStack:
    """N crops (each with ``y0``, ``x0`` and boolean ``bits``) of an image of ``image_shape``.

    ``stack[i]`` is mask i at full size (H x W bool); ``stack[indices]`` (a slice, a list, a
    boolean or integer tensor or array, as ``Instances`` indexes its fields) is a stack of
    those masks; iterating gives the full-size masks one by one."""

    def __init__(self, crops, image_shape):
        self.crops = list(crops)
        self.image_shape = tuple(int(v) for v in image_shape)

    def __len__(self):
        return len(self.crops)

    @property
    def shape(self):
        return (len(self.crops),) + self.image_shape

    def full(self, i):
        crop = self.crops[i]
        mask = np.zeros(self.image_shape, dtype=bool)
        height, width = crop.bits.shape
        mask[crop.y0 : crop.y0 + height, crop.x0 : crop.x0 + width] = crop.bits
        return mask

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.full(int(index) % len(self) if index < 0 else int(index))
        if isinstance(index, slice):
            return CroppedMaskStack(self.crops[index], self.image_shape)
        index = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return CroppedMaskStack([self.crops[int(i)] for i in index.reshape(-1)], self.image_shape)

    def __iter__(self):
        return (self.full(i) for i in range(len(self)))

    def to(self, *args, **kwargs):
        """Crops live on the CPU; ``Instances.to`` moves every field."""
        return self
