"""The nuclei's diameter estimated from the image itself: read off by the size head, or
searched for by predicting.

The size head (``estimate_by_size_head``) looks at the image's centre at a first guess
and says how far the view's nuclei are from the working diameter; when that is more
than 2x, one more look at the corrected scale, where the head reads best. Each look
costs a bottom-up pass over a small view.

The size head's reading can be checked by the nuclei found at it (``checked_diameter``):
when their median diameter is far from the reading, the prediction is made again at theirs.

The search (``estimate_diameter``, for models without a size head): a pass predicts
the centre of the image (a square of TEST.DIAMETER_ESTIMATE_SIZE working-scale pixels,
or the whole image when smaller) at a guessed diameter and measures the median
diameter of the confident nuclei there, leaving out those cut by the square's edge. A detector trained at one scale measures nuclei far from it
with a bias towards its working diameter (on dsb2018_val, nuclei 2.9x the working
diameter measured 1.5x after 600 iterations), so one pass is not enough: the guess
moves to the measurement, then by secant steps on log(measured / guessed), until a
measurement agrees with its guess within ESTIMATE_TOLERANCE or MAX_PASSES passes
are spent (then the last measurement is the estimate). Passes on large nuclei run
downscaled, so they cost little.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ..data.diameter import median_diameter

__all__ = ["ESTIMATE_RANGE", "ESTIMATE_TOLERANCE", "MAX_PASSES", "Estimate", "central_region", "checked_diameter",
           "estimate_by_size_head", "estimate_diameter"]

# A measurement within this fraction of its guess ends the search: the pass was at the
# working scale, within the training jitter, and (over the whole image) is the prediction.
ESTIMATE_TOLERANCE = 0.15
# Passes over the centre before the last guess is taken as it is.
MAX_PASSES = 3
# The size head reads best well inside the range it was trained on (MODEL.SIZE_HEAD.VIEW_RANGE):
# a reading more than this factor from the working scale is checked by a second look at the
# scale it implies (on dsb2018_val a second look for every image was less accurate).
HEAD_SURE_RANGE = 2.0
MAX_HEAD_PASSES = 2
# The estimate stays within this factor of TEST.DEFAULT_DIAMETER: a detector finds nuclei
# in its anchors' range (8-128 px, about 0.5-8x the working diameter), and a stray tiny
# estimate would otherwise cut a large image into thousands of tiles.
ESTIMATE_RANGE = 8.0
# A secant step moves at most this many times as far as the plain step to the measurement
# (it assumes the bias keeps at least a third of the scale error).
MAX_GAIN = 3.0

Region = Tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass
class Estimate:
    diameter: Optional[float]  # None: no confident nucleus found, even over the whole image
    passes: int
    # The last pass, when it covered the whole image: its detections and the diameter they
    # were predicted at (a caller reuses them instead of predicting again at that diameter).
    detections: Optional[list] = None
    detections_diameter: Optional[float] = None


def central_region(height: int, width: int, side: int) -> Region:
    """The centred square of ``side`` pixels (clipped to the image)."""
    h, w = min(height, side), min(width, side)
    y0, x0 = (height - h) // 2, (width - w) // 2
    return y0, y0 + h, x0, x0 + w


def _measure(detections, region: Region, shape, confident) -> Optional[float]:
    """Median diameter of the confident detections (region coordinates) not cut by a side of
    the region that lies inside the image; of all confident ones if every one is cut."""
    y0, y1, x0, x1 = region
    height, width = shape
    inner, every = [], []
    for detection in detections:
        if not confident(detection):
            continue
        m = detection.mask
        every.append(m.area)
        cut = ((m.y0 <= 0 < y0) or (m.x0 <= 0 < x0)
               or (m.y1 >= y1 - y0 and y1 < height) or (m.x1 >= x1 - x0 and x1 < width))
        if not cut:
            inner.append(m.area)
    found = median_diameter(inner)
    return found if found is not None else median_diameter(every)


def _clamped(diameter: float, default: float) -> float:
    """``diameter`` kept within ESTIMATE_RANGE of ``default``."""
    return min(max(diameter, default / ESTIMATE_RANGE), default * ESTIMATE_RANGE)


def _next_guess(history: List[Tuple[float, float]]) -> float:
    """Next log-diameter from (log guess, log(measured / guess)) pairs: the measurement after
    one pass, a secant step towards log(measured / guess) = 0 after two or more."""
    x, error = history[-1]
    step = error
    if len(history) > 1:
        x_before, error_before = history[-2]
        if x != x_before:
            slope = (error - error_before) / (x - x_before)
            if slope < 0:
                step = error * min(max(-1.0 / slope, 1.0), MAX_GAIN)
    return x + step


def estimate_diameter(
    predict_at: Callable[[object, float], list],
    image,
    default: float,
    target: float,
    region_size: int,
    confident: Callable[[object], bool],
    tolerance: float = ESTIMATE_TOLERANCE,
    max_passes: int = MAX_PASSES,
) -> Estimate:
    """Estimate the median nucleus diameter (image pixels) of ``image`` (H x W [x C]).

    ``predict_at(image_part, diameter)`` returns detections (predictor.Detection) of
    ``image_part`` predicted as if its nuclei had ``diameter`` pixels; ``default``
    is the first guess, ``target`` the working diameter, ``region_size`` the side in
    working-scale pixels of the centre each pass sees.
    """
    height, width = image.shape[:2]
    guess, history, passes = default, [], 0
    while passes < max_passes:
        region = central_region(height, width, int(math.ceil(region_size * guess / target)))
        whole = region == (0, height, 0, width)
        y0, y1, x0, x1 = region
        detections = predict_at(image[y0:y1, x0:x1], guess)
        passes += 1
        measured = _measure(detections, region, (height, width), confident)
        if measured is None and not whole:  # nothing in the centre: the whole image, once
            region, whole = (0, height, 0, width), True
            detections = predict_at(image, guess)
            passes += 1
            measured = _measure(detections, region, (height, width), confident)
        last = dict(detections=detections, detections_diameter=guess) if whole else {}
        if measured is None:
            return Estimate(None, passes, **last)
        measured = _clamped(measured, default)
        error = math.log(measured / guess)
        if abs(error) <= math.log(1 + tolerance):
            return Estimate(measured, passes, **last)
        history.append((math.log(guess), error))
        guess = _clamped(math.exp(_next_guess(history)), default)
    # Out of passes: the last measurement, made nearest the working scale (an unchecked
    # extrapolation from noisy measurements can overshoot far).
    return Estimate(measured, passes)


def estimate_by_size_head(
    read_scale: Callable[[object, float, Region], Tuple[float, float]],
    image,
    default: float,
    target: float,
    region_size: int,
    sure_range: float = HEAD_SURE_RANGE,
) -> Estimate:
    """Estimate the median nucleus diameter (image pixels) of ``image`` with the size head.

    ``read_scale(image, scale, region)`` returns the head's reading of ``image[region]``
    resized by ``scale``: the ratio of its nuclei's diameter to the working diameter, and
    the scale the view really had. ``default`` is the first guess, ``target`` the working
    diameter, ``region_size`` the side in view pixels of the centre each look sees. A
    reading beyond ``sure_range`` either way is checked by a second look at the scale it
    implies.
    """
    height, width = image.shape[:2]
    guess, passes = default, 0
    while True:
        scale = target / guess
        region = central_region(height, width, int(math.ceil(region_size / scale)))
        ratio, real_scale = read_scale(image, scale, region)
        passes += 1
        found = _clamped(ratio * target / real_scale, default)
        if passes == MAX_HEAD_PASSES or abs(math.log(ratio)) <= math.log(sure_range):
            return Estimate(found, passes)
        guess = found


def checked_diameter(detections, diameter, default, shape, confident, tolerance):
    """The diameter to predict again at when the nuclei found at ``diameter`` disagree with it
    by more than ``tolerance`` (their median over the whole image, clamped as estimates are);
    None when they agree, or when none is confident."""
    measured = _measure(detections, (0, shape[0], 0, shape[1]), shape, confident)
    if measured is None:
        return None
    measured = _clamped(measured, default)
    return measured if abs(math.log(measured / diameter)) > math.log(1 + tolerance) else None
