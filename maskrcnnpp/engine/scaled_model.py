"""Evaluation at the working scale: a model wrapper for Detectron2's ``inference_on_dataset``.

Under INPUT.SCALE_POLICY "diameter" the test loader keeps images at their own
size (no resize), and :class:`DiameterScaledModel` predicts each one as
``tools/predict.py`` does (NucleiPredictor.predict: rescale to the working
diameter, tiles, stitching), with the diameter estimated or, with
TEST.DIAMETER_SOURCE "ground_truth", the image's median annotated diameter.
It returns what GeneralizedRCNN returns in inference (``{"instances": ...}`` at
the original size), so the evaluators and ``inference_on_dataset`` stay as they are,
with the diameter the image was predicted at and its source beside the instances.

The evaluators read full-size masks (N x H x W), so they are made here, per
image; prediction itself (tools/predict.py) never makes them.
"""
import logging

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from ..predict.predictor import NucleiPredictor

__all__ = ["DiameterScaledModel"]

logger = logging.getLogger(__name__)


class DiameterScaledModel(torch.nn.Module):
    def __init__(self, cfg, model):
        super().__init__()
        self.model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        self.predictor = NucleiPredictor(cfg, model=self.model)
        # Keep what the ROI heads keep (down to MODEL.ROI_HEADS.SCORE_THRESH_TEST), as
        # GeneralizedRCNN does for COCO AP; the nuclei metrics apply their own threshold.
        self.predictor.score_threshold = cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
        self.ground_truth_diameter = cfg.TEST.DIAMETER_SOURCE == "ground_truth"
        self.diameters = []  # (file_name, diameter, source) of each image seen

    def forward(self, batched_inputs):
        if self.training:
            raise RuntimeError("DiameterScaledModel is for inference; train the wrapped model")
        return [self.predict_one(item) for item in batched_inputs]

    @torch.no_grad()
    def predict_one(self, item):
        image = item["image"].permute(1, 2, 0).cpu().numpy()  # H x W x C in INPUT.FORMAT
        height, width = image.shape[:2]
        name = item.get("file_name", "the image")
        diameter = item.get("median_diameter") if self.ground_truth_diameter else None
        prediction = self.predictor.predict(image, diameter=diameter, name=name, warn=logger.warning)
        detections = prediction.detections
        self.diameters.append((name, prediction.diameter, prediction.diameter_source))
        out_height, out_width = item.get("height", height), item.get("width", width)
        if (out_height, out_width) != (height, width):
            raise ValueError(
                f"{name}: the test mapper resized the image ({width} x {height} for {out_width} x {out_height}); "
                "INPUT.SCALE_POLICY diameter expects images at their own size"
            )
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.tensor([d.box for d in detections], dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.tensor([d.score for d in detections], dtype=torch.float32)
        instances.pred_classes = torch.tensor([d.category_id - 1 for d in detections], dtype=torch.int64)
        masks = np.zeros((len(detections), height, width), dtype=bool)
        for k, detection in enumerate(detections):
            m = detection.mask
            masks[k, m.y0 : m.y1, m.x0 : m.x1] = m.bits
        instances.pred_masks = torch.from_numpy(masks)
        return {"instances": instances, "diameter": prediction.diameter, "diameter_source": prediction.diameter_source}
