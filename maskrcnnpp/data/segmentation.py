"""COCO annotation segmentations (RLE or polygons) as pycocotools RLE."""
import pycocotools.mask as mask_util


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """One compressed RLE of an annotation given as RLE (counts str, bytes or list) or polygons."""
    if isinstance(segmentation, dict):
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            return mask_util.frPyObjects(segmentation, height, width)
        # compressed RLE; JSON stores counts as str, pycocotools wants bytes
        return dict(segmentation, counts=counts.encode() if isinstance(counts, str) else counts)
    return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
