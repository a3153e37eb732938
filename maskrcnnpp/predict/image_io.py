"""Reading microscopy images of any common pixel format as 8-bit RGB.

The models are trained on 8-bit images, so every input becomes an H x W x 3
uint8 RGB array:

* grey (``L``, ``1``), palette, RGBA, LA, CMYK, ... go through Pillow's own
  conversion to RGB (alpha is dropped, not composited: DSB2018's RGBA images
  have an all-opaque alpha channel);
* 16-bit (``I;16*``), 32-bit integer (``I``) and float (``F``) images are
  rescaled linearly so that their 0.1st percentile maps to 0 and their 99.9th
  percentile to 255 (clipped). A fixed division by 257 would leave 12-bit
  camera data nearly black; the percentiles make the result independent of the
  bit depth actually used, at the cost of saturating the brightest 0.1 %.
"""
import os

import numpy as np
from PIL import Image, ImageOps

from .errors import PredictError

__all__ = [
    "IMAGE_EXTENSIONS",
    "HIGH_DEPTH_PERCENTILES",
    "read_image_rgb8",
    "to_rgb8",
    "rescale_to_uint8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
HIGH_DEPTH_PERCENTILES = (0.1, 99.9)
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def read_image_rgb8(path):
    """The image at ``path`` as H x W x 3 uint8 RGB; raises PredictError if it cannot be read."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # phone/camera rotation, as Detectron2 does
            image.load()
            return to_rgb8(image)
    except PredictError:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, even SyntaxError on broken files
        raise PredictError(f"{path}: cannot read image ({_reason(e)})") from None


def to_rgb8(image):
    """A Pillow image of any mode as H x W x 3 uint8 RGB (see the module docstring)."""
    if image.mode in _HIGH_DEPTH_MODES:
        grey = rescale_to_uint8(np.asarray(image))
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as e:
        raise PredictError(f"unsupported image mode {image.mode} ({e})") from None


def rescale_to_uint8(values, percentiles=HIGH_DEPTH_PERCENTILES):
    """Linear map of a 2-D array of any numeric type to uint8: low percentile -> 0, high -> 255."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = np.percentile(values, percentiles)
    if high <= low:  # nearly constant image: fall back to the full range
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _reason(error):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.replace(os.linesep, " ")

