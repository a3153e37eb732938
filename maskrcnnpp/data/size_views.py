"""Views of an image for the size head (modeling/size_head.py): a region of it rescaled, the
same way in training and in prediction, and mirrored out to a minimum side so that the
coarsest features still cover a few pixels."""
import math

import numpy as np

from .images import rescaled

__all__ = ["MIN_VIEW_SIDE", "rescaled_view"]

# At stride 32 this leaves the coarsest features 2 x 2.
MIN_VIEW_SIDE = 64


def rescaled_view(image, scale, region=None):
    """``image[y0:y1, x0:x1]`` (H x W x C, region ``(y0, y1, x0, x1)``, default the whole
    image) resized by ``scale``, mirrored out to at least MIN_VIEW_SIDE pixels a side.
    Returns the view and the scale it really has (rounding to whole pixels changes it)."""
    if region is not None:
        y0, y1, x0, x1 = region
        image = image[y0:y1, x0:x1]
    height, width = image.shape[:2]
    image = rescaled(image, scale)
    new_h, new_w = image.shape[:2]
    pad_h, pad_w = max(0, MIN_VIEW_SIDE - new_h), max(0, MIN_VIEW_SIDE - new_w)
    if pad_h or pad_w:
        pads = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)] + [(0, 0)] * (image.ndim - 2)
        image = np.pad(image, pads, mode="symmetric")
    return image, math.sqrt((new_h / height) * (new_w / width))
