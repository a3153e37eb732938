"""A stub for Mask R-CNN in inference, and images of disks, for the scale and tiling tests.

The stub finds the bright disks of its input whose equivalent diameter lies in a
detector-like range and returns them as Detectron2's ROI heads do before
post-processing (boxes + 28 x 28 mask probabilities), recording the diameters it saw.
"""
import math

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.data.synthetic import disks, full_masks


def stub_cfg():
    """The config a StubDiskModel is predicted under: a mask model on the CPU taking RGB,
    scaled by nucleus diameter (17 px, and 17 px assumed by the estimate's first pass)."""
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.SCALE_POLICY = "diameter"
    cfg.INPUT.NUCLEUS_DIAMETER = 17.0
    cfg.TEST.DEFAULT_DIAMETER = 17.0
    return cfg


class StubDiskModel(torch.nn.Module):
    def __init__(self, smallest=5.0, largest=70.0, junk=0):
        super().__init__()
        self.smallest, self.largest = smallest, largest
        self.junk = junk  # also this many tiny detections of score 0.1 per input
        self.seen = []  # equivalent diameters of what it detected, in its input's pixels

    def inference(self, inputs, do_postprocess=False):
        assert not do_postprocess
        results = []
        for item in inputs:
            image = item["image"][0].numpy()
            height, width = image.shape
            count, labels, stats, _ = cv2.connectedComponentsWithStats((image > 100).astype(np.uint8), connectivity=8)
            boxes, masks = [], []
            for k in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[k])
                diameter = math.sqrt(4 * area / math.pi)
                if not self.smallest <= diameter <= self.largest:
                    continue
                crop = (labels[y : y + h, x : x + w] == k).astype(np.float32)
                masks.append(cv2.resize(crop, (28, 28), interpolation=cv2.INTER_LINEAR))
                boxes.append([x, y, x + w, y + h])
                self.seen.append(diameter)
            scores = list(np.linspace(0.99, 0.9, len(boxes)))
            for j in range(self.junk):
                x, y = (7 * j) % max(1, width - 3), (13 * j) % max(1, height - 3)
                boxes.append([x, y, x + 3, y + 3])
                masks.append(np.ones((28, 28), np.float32))
                scores.append(0.1)
            instances = Instances((height, width))
            instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            instances.scores = torch.tensor(scores, dtype=torch.float32)
            instances.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
            instances.pred_masks = torch.tensor(np.array(masks, dtype=np.float32)).reshape(-1, 1, 28, 28)
            results.append(instances)
        return results


def disks_image(size, diameter, count, seed=0):
    """Up to ``count`` disks of one diameter, whole, and apart enough to stay apart when scaled
    down; their masks full-size."""
    gap = max(2, int(diameter / 4))
    image, placed = disks(size, [diameter] * count, seed, gap=gap, margin=2, tries=50 * count)
    return image, full_masks(size, placed)
