"""Instance masks: COCO segmentations (RLE or polygons) to and from boolean masks."""
from collections.abc import Sequence

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["LazyMasks", "decode_segmentation", "encode_mask", "segmentation_to_rle"]


def encode_mask(mask, shape=None, offset=(0, 0)) -> dict:
    """COCO compressed RLE (``counts`` as str, JSON-ready) of ``mask`` (nonzero = inside) placed
    with its top-left pixel at ``offset`` = (row, column) in an image of ``shape`` (default: the
    mask's own). No image-sized array is made: a small crop of a huge image stays cheap.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape if shape is None else shape
    y0, x0 = offset
    # The crop's columns at full image height; COCO runs go down each column, left to right.
    columns = np.zeros((height, mask.shape[1]), dtype=bool)
    columns[y0 : y0 + mask.shape[0]] = mask
    flat = columns.ravel(order="F")
    if flat.size == 0:
        counts = [height * width]
    else:
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
        if flat[0]:
            counts.insert(0, 0)  # runs alternate zeros and ones, starting with zeros
        counts[0] += x0 * height  # the empty columns left of the crop
        right = (width - x0 - mask.shape[1]) * height
        if len(counts) % 2:  # the last run is zeros
            counts[-1] += right
        elif right:
            counts.append(right)
    rle = mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """One compressed RLE of an annotation given as RLE (counts str, bytes or list) or polygons."""
    if isinstance(segmentation, dict):
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            return mask_util.frPyObjects(segmentation, height, width)
        # compressed RLE; JSON stores counts as str, pycocotools wants bytes
        return dict(segmentation, counts=counts.encode() if isinstance(counts, str) else counts)
    return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))


def decode_segmentation(segmentation, height=None, width=None) -> np.ndarray:
    """Boolean H x W mask of one COCO segmentation: RLE (counts str, bytes or list) or polygons.

    ``height`` and ``width`` default to an RLE's own ``size``; polygons need them.
    """
    if height is None or width is None:
        if not isinstance(segmentation, dict):
            raise ValueError("decoding polygons needs the image height and width")
        height, width = segmentation["size"]
    mask = mask_util.decode(segmentation_to_rle(segmentation, height, width)).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"Segmentation of size {mask.shape} in an image of {(height, width)}")
    return mask


class LazyMasks(Sequence):
    """``to_mask(item)`` for each of ``items``, made only when read.

    Consumers that read one mask at a time (``resolve_overlaps``,
    ``masks_to_label_image``) then never hold N full-size masks at once.
    """

    def __init__(self, items, to_mask):
        self._items = items
        self._to_mask = to_mask

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyMasks(self._items[i], self._to_mask)
        return self._to_mask(self._items[i])
