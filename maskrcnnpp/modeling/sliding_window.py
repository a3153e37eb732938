"""Overlap-averaged sliding-window prediction over an image of any size."""
import math
from typing import Callable, List

import torch
import torch.nn.functional as F

__all__ = ["window_starts", "sliding_window_predict"]


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Starts of windows covering [0, length), the last one flush with the end."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_window_predict(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    window: int,
    overlap: float,
    divisor: int,
    batch_size: int = 4,
) -> torch.Tensor:
    """Run ``predict`` (N x C x h x w -> N x K x h x w) on windows of ``image`` (C x H x W).

    The image is zero-padded at the bottom/right to a multiple of ``divisor``;
    windows of ``window`` pixels (0: the whole padded image; smaller images get
    one window per side) step by ``window * (1 - overlap)``, and where they
    overlap their predictions are averaged. Returns K x H x W.
    """
    height, width = image.shape[-2:]
    padded_h = math.ceil(height / divisor) * divisor
    padded_w = math.ceil(width / divisor) * divisor
    image = F.pad(image, (0, padded_w - width, 0, padded_h - height))
    win_h = min(window, padded_h) if window > 0 else padded_h
    win_w = min(window, padded_w) if window > 0 else padded_w
    boxes = [
        (y, x)
        for y in window_starts(padded_h, win_h, max(1, round(win_h * (1 - overlap))))
        for x in window_starts(padded_w, win_w, max(1, round(win_w * (1 - overlap))))
    ]
    total = None
    count = image.new_zeros((1, padded_h, padded_w))
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        crops = torch.stack([image[:, y : y + win_h, x : x + win_w] for y, x in chunk])
        predictions = predict(crops)
        if total is None:
            total = image.new_zeros((predictions.shape[1], padded_h, padded_w))
        for (y, x), p in zip(chunk, predictions):
            total[:, y : y + win_h, x : x + win_w] += p
            count[:, y : y + win_h, x : x + win_w] += 1
    return (total / count)[:, :height, :width]
