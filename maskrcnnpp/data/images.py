"""Reading an image of any common pixel format as 8-bit RGB (for prediction and label import).

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
import numpy as np
from detectron2.data import transforms as T
from PIL import Image, ImageOps

from ..errors import UserError, error_reason

__all__ = ["HIGH_DEPTH_PERCENTILES", "read_image_rgb8", "rescale_to_uint8", "rescaled", "to_rgb8"]

HIGH_DEPTH_PERCENTILES = (0.1, 99.9)
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def read_image_rgb8(path, page=None, page_option=None):
    """The image at ``path`` as H x W x 3 uint8 RGB; raises UserError if it cannot be read.

    A file of several pages (a TIFF z-stack or time series, an animated GIF) is refused unless
    ``page`` (1 = the first, as Fiji counts slices) says which one to read: predicting its first
    page alone would silently miss the others. ``page_option``: the command's option that sets
    ``page``, named in the refusal.
    """
    try:
        with Image.open(path) as image:
            pages = getattr(image, "n_frames", 1)
            if page is None and pages > 1:
                choose = f"choose one with {page_option} N (1 to {pages}), or " if page_option else ""
                raise UserError(f"{path}: the file holds {pages} pages (a z-stack or time series); "
                                f"{choose}save each page as an image of its own")
            if page is not None:
                if not 1 <= page <= pages:
                    raise UserError(f"{path}: page {page} is out of range, the file holds {pages} page(s)")
                image.seek(page - 1)
            image = ImageOps.exif_transpose(image)  # phone/camera rotation, as Detectron2 does
            image.load()
            return to_rgb8(image)
    except UserError:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, even SyntaxError on broken files
        raise UserError(f"{path}: cannot read image ({error_reason(e)})") from None


def to_rgb8(image):
    """A Pillow image of any mode as H x W x 3 uint8 RGB (see the module docstring)."""
    if image.mode in _HIGH_DEPTH_MODES:
        grey = rescale_to_uint8(np.asarray(image))
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as e:
        raise UserError(f"unsupported image mode {image.mode} ({e})") from None


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


def rescaled(image, scale):
    """``image`` (H x W [x C]) resized bilinearly by ``scale`` to whole pixels (at least 1 a side);
    the same array when that leaves its size unchanged."""
    height, width = image.shape[:2]
    new_h, new_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    if (new_h, new_w) == (height, width):
        return image
    return T.ResizeTransform(height, width, new_h, new_w, Image.BILINEAR).apply_image(image)
