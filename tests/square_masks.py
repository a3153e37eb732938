"""Square masks and their polygons, for the segmentation and evaluator tests."""
import numpy as np


def square(shape, y, x, size):
    mask = np.zeros(shape, dtype=bool)
    mask[y : y + size, x : x + size] = True
    return mask


def polygon_of(y, x, size):
    # Corners on pixel boundaries; rasterizes to the size x size square at (y, x).
    return [[x, y, x + size, y, x + size, y + size, x, y + size]]
