"""Overlay PNGs: each nucleus outlined and filled in its own colour with Detectron2's Visualizer.

Nuclei are drawn one by one from their region in the label image (so the
overlay shows exactly what the label image holds), each as polygons traced
within the nucleus' own rectangle: no full-size mask per nucleus is made, and
images larger than a tile are drawn tile by tile, so memory stays bounded
however large the image.
``Visualizer.draw_binary_mask`` is not used because for a mask with a hole it
blends a full-size float RGBA image per nucleus, which matplotlib keeps until
the figure is rendered.
"""
import cv2
import numpy as np
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

__all__ = ["FILL_ALPHA", "TILE_SIZE", "draw_overlay", "region_polygons"]

FILL_ALPHA = 0.35
# Matplotlib renders through float RGBA buffers (~120 bytes per pixel: ~480 MiB for a
# 2048 x 2048 image at once, ~60 MiB in 512 x 512 tiles).
TILE_SIZE = 512
_PALETTE = colormap(rgb=True, maximum=1)


def draw_overlay(image_rgb, labels, crops, tile_size=TILE_SIZE):
    """The overlay as H x W x 3 uint8 RGB and the number of nuclei drawn.

    ``labels`` is the label image; ``crops[k - 1]`` is a CroppedMask whose
    rectangle contains every pixel of label k (the detection's own mask).
    """
    nuclei = []  # (x0, y0, x1, y1, colour, outer polygons, hole polygons)
    for k, crop in enumerate(crops, start=1):
        region = labels[crop.y0 : crop.y1, crop.x0 : crop.x1] == k
        outer, holes = region_polygons(region, offset=(crop.x0, crop.y0))
        if outer:
            colour = _PALETTE[(k - 1) % len(_PALETTE)]
            nuclei.append((crop.x0, crop.y0, crop.x1, crop.y1, colour, outer, holes))
    height, width = labels.shape
    overlay = np.empty_like(image_rgb)
    for ty in range(0, height, tile_size):
        for tx in range(0, width, tile_size):
            tile = (slice(ty, ty + tile_size), slice(tx, tx + tile_size))
            overlay[tile] = _draw_tile(image_rgb[tile], tx, ty, nuclei)
    return overlay, len(nuclei)


def _draw_tile(image_rgb, tx, ty, nuclei):
    height, width = image_rgb.shape[:2]
    visualizer = Visualizer(image_rgb, metadata=None, scale=1.0)
    for x0, y0, x1, y1, colour, outer, holes in nuclei:
        # Polygons are traced on pixel centres, so their strokes stay within a pixel of the crop.
        if x1 + 1 < tx or y1 + 1 < ty or x0 - 1 > tx + width or y0 - 1 > ty + height:
            continue
        for polygon in outer:
            visualizer.draw_polygon(polygon - (tx, ty), colour, alpha=FILL_ALPHA)
        for polygon in holes:  # outline only; the hole's pixels belong to another nucleus
            visualizer.draw_polygon(polygon - (tx, ty), colour, alpha=0.0)
    return visualizer.output.get_image()


def region_polygons(region, offset=(0, 0)):
    """Outer contours and hole contours of a boolean region, as N x 2 (x, y) float arrays.

    Vertices are pixel centres (+0.5), Visualizer's convention. A region too thin
    to give a polygon (1 or 2 contour points) becomes its bounding rectangle, so
    every nucleus is drawn.
    """
    contours, hierarchy = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    outer, holes = [], []
    if hierarchy is None:
        return outer, holes
    dx, dy = offset
    for contour, (_next, _prev, _child, parent) in zip(contours, hierarchy[0]):
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0) + 1
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
        else:
            points += 0.5
        points += (dx, dy)
        (outer if parent < 0 else holes).append(points)
    return outer, holes
