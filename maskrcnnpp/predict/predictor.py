"""Mask R-CNN (++) inference on one image at a time, returning memory-lean detections."""
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.modeling import build_model
from PIL import Image

from ..data.augmentation import build_nuclei_augmentation
from .detections import detections_from_raw_instances
from .errors import PredictError
from .weights import load_matching_weights

__all__ = ["NucleiPredictor"]


class NucleiPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` (strictly) and predicts.

    Like Detectron2's DefaultPredictor, but it takes 8-bit RGB, and it skips
    Detectron2's post-processing so that masks are pasted one at a time
    (see detections.py).
    """

    def __init__(self, cfg, score_threshold=0.5, config_file="the config"):
        if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN" or not cfg.MODEL.MASK_ON:
            raise PredictError(
                f"{config_file}: prediction needs an instance-segmentation model "
                f"(GeneralizedRCNN with MASK_ON), not {cfg.MODEL.META_ARCHITECTURE}"
            )
        if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
            raise PredictError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE} but no CUDA device is available")
        self.cfg = cfg.clone()
        # Cut in the ROI heads, before the mask head: the mask head then runs on the kept
        # boxes only, not on up to DETECTIONS_PER_IMAGE low-scoring ones.
        self.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        self.score_threshold = score_threshold
        self.model = build_model(self.cfg)
        self.model.eval()
        load_matching_weights(self.model, self.cfg.MODEL.WEIGHTS, config_file)
        self.resize = T.AugmentationList(build_nuclei_augmentation(self.cfg, is_train=False))
        self.input_format = self.cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image_rgb):
        """Detections (sorted by decreasing score) of an H x W x 3 uint8 RGB image."""
        height, width = image_rgb.shape[:2]
        image = convert_PIL_to_numpy(Image.fromarray(image_rgb), self.input_format)
        resized = T.AugInput(image)
        self.resize(resized)
        tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
        inputs = [{"image": tensor, "height": height, "width": width}]
        raw = self.model.inference(inputs, do_postprocess=False)[0]
        return detections_from_raw_instances(raw, (height, width), self.score_threshold)
