"""Instance masks to and from COCO segmentations, and the lazy mask sequence."""
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest

from maskrcnnpp.data.segmentation import LazyMasks, decode_segmentation, encode_mask
from square_masks import polygon_of, square


def test_decode_segmentation_formats():
    mask = square((10, 12), 2, 3, 4)
    compressed = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    uncompressed = {"size": [10, 12], "counts": [32, 4, 6, 4, 6, 4, 6, 4, 54]}  # column-major runs
    for segmentation in (
        compressed,
        dict(compressed, counts=compressed["counts"].decode()),
        uncompressed,
        polygon_of(2, 3, 4),
    ):
        assert np.array_equal(decode_segmentation(segmentation, 10, 12), mask)


def test_encoded_masks_are_json_ready_and_decode_to_themselves():
    mask = square((10, 12), 2, 3, 4) | square((10, 12), 7, 0, 2)
    rle = encode_mask(mask.astype(np.uint8) * 255)  # any nonzero value is inside
    assert rle["size"] == [10, 12] and isinstance(rle["counts"], str)
    rle = json.loads(json.dumps(rle))
    decoded = decode_segmentation(rle)  # the size comes from the RLE
    assert decoded.dtype == bool and np.array_equal(decoded, mask)


def test_decoding_checks_the_image_size():
    rle = encode_mask(square((10, 12), 2, 3, 4))
    with pytest.raises(ValueError, match=r"Segmentation of size \(10, 12\) in an image of \(10, 13\)"):
        decode_segmentation(rle, 10, 13)
    with pytest.raises(ValueError, match="polygons needs the image height and width"):
        decode_segmentation(polygon_of(2, 3, 4))


def test_lazy_masks_make_each_mask_only_when_read():
    made = []

    def to_mask(k):
        made.append(k)
        return square((8, 8), k, k, 2)

    masks = LazyMasks([0, 3, 5], to_mask)
    assert len(masks) == 3 and made == []
    assert np.array_equal(masks[1], square((8, 8), 3, 3, 2)) and made == [3]
    assert [m.sum() for m in masks[1:]] == [4, 4] and made == [3, 3, 5]
    with pytest.raises(IndexError):
        masks[3]
