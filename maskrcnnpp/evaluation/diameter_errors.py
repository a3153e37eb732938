"""How far estimated nucleus diameters are from the annotated ones, per image.

An image's error is ``|estimated / annotated - 1|``; it is "1.5x off" when the larger of the
two is more than 1.5 times the smaller; the bias is the median of
``log(estimated / annotated)`` given as a factor.
"""
import math

import numpy as np

__all__ = ["OFF_FACTOR", "diameter_errors"]

OFF_FACTOR = 1.5


def diameter_errors(estimated, annotated):
    """Summary of paired estimated and annotated diameters (pixels): images, median and 90th
    percentile error (%), share of images more than OFF_FACTOR off (%), bias (a factor)."""
    estimated, annotated = np.asarray(estimated, dtype=float), np.asarray(annotated, dtype=float)
    if estimated.shape != annotated.shape or estimated.ndim != 1:
        raise ValueError(f"need two equally long lists of diameters, not {estimated.shape} and {annotated.shape}")
    if estimated.size == 0:
        return {"images": 0, "median_error": math.nan, "p90_error": math.nan, "off_share": math.nan, "bias": math.nan}
    log_ratio = np.log(estimated / annotated)
    error = np.abs(estimated / annotated - 1.0) * 100.0
    return {
        "images": int(estimated.size),
        "median_error": float(np.median(error)),
        "p90_error": float(np.percentile(error, 90)),
        "off_share": float(np.mean(np.abs(log_ratio) > math.log(OFF_FACTOR)) * 100.0),
        "bias": float(np.exp(np.median(log_ratio))),
    }
