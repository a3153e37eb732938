"""The predictor: Mask R-CNN (++) inference on one image at a time, returning memory-lean
detections whose masks are kept as small boolean crops.

Detectron2's own post-processing pastes every mask at full image resolution
into one N x H x W tensor: 400 nuclei in a 2048 x 2048 image would take 1.6 GB.
Here each mask is pasted on its own and only the rectangle it covers is kept,
so memory grows with the nuclei's area, not with N x H x W.

INPUT.SCALE_POLICY "diameter" (or a diameter passed by the caller): the image is
resized once to the working scale, nuclei of INPUT.NUCLEUS_DIAMETER pixels, and
predicted there in overlapping tiles (tiling.py); each kept nucleus' mask is then
pasted at the original resolution from the model's mask probabilities. The
diameter is the caller's, or estimated from the image (estimate.py): by the size head
when the weights carry one (size_reading.py), else by a search.
"""
import contextlib
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image

from ..config import check_device
from ..data.augmentation import build_nuclei_augmentation
from ..data.images import rescaled
from ..data.segmentation import encode_mask
from ..errors import UserError
from ..weights import load_weights_strictly
from .estimate import checked_diameter, estimate_by_size_head, estimate_diameter
from .size_reading import load_size_reader
from .tiling import predict_tiled

__all__ = ["CroppedMask", "Detection", "NucleiPredictor", "Prediction", "check_diameter",
           "detections_from_raw_instances", "paste_masks"]

# A diameter under a pixel is not a nucleus' size.
MIN_DIAMETER = 1.0


@dataclass
class CroppedMask:
    """A boolean mask stored as the rectangle ``bits`` placed at row ``y0``, column ``x0``."""

    y0: int
    x0: int
    bits: np.ndarray  # bool, h x w; 0 x 0 for an empty mask

    @classmethod
    def from_full(cls, mask):
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=bool))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(y0), int(x0), mask[y0:y1, x0:x1].copy())

    @property
    def y1(self):
        return self.y0 + self.bits.shape[0]

    @property
    def x1(self):
        return self.x0 + self.bits.shape[1]

    @property
    def area(self):
        return int(np.count_nonzero(self.bits))

    def full(self, shape):
        """The mask as an H x W boolean array."""
        mask = np.zeros(shape, dtype=bool)
        mask[self.y0 : self.y1, self.x0 : self.x1] = self.bits
        return mask

    def to_rle(self, shape):
        """COCO compressed RLE of the full-size mask (JSON-ready); no full-size mask is made."""
        return encode_mask(self.bits, shape, offset=(self.y0, self.x0))


@dataclass
class Detection:
    box: Tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float
    category_id: int  # 1-based, as in COCO files (Detectron2's class 0 -> 1)
    mask: CroppedMask
    # The model's M x M mask probabilities, kept while the mask is at the working scale
    # so that it can be pasted again at the original resolution.
    probabilities: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)


@dataclass
class Prediction:
    """What one image's prediction found and how: its detections (sorted by decreasing score, masks
    as crops), the nucleus diameter (image pixels) it was predicted at, and how that was found."""

    detections: List[Detection]
    diameter: Optional[float] = None  # None: INPUT.SCALE_POLICY image_size, resized by image size
    # "given"; estimated by the "size_head" or the "search"; "default" (the search found no
    # nucleus to measure)
    diameter_source: Optional[str] = None
    estimate_passes: int = 0  # looks of the size head or passes of the search (0: not estimated)
    seconds: float = 0.0  # wall time of the prediction


# The most float32 values one batch of paste_masks samples at once (16 MiB).
PASTE_BATCH_PIXELS = 1 << 22


def paste_masks(probabilities, boxes, shape, threshold=0.5) -> List[CroppedMask]:
    """Each of ``probabilities`` (M x M tensors) pasted into its box (x0, y0, x1, y1) of an image
    of ``shape`` (H, W) and thresholded, as Detectron2's ``paste_masks_in_image`` pastes one
    mask, but on a canvas covering only the box (its pixels and one more on each side), so no
    H x W array is made. Masks of similar size are sampled together, in batches of at most
    PASTE_BATCH_PIXELS canvas pixels."""
    height, width = shape
    canvases = []  # (top, left, canvas height, canvas width, box in canvas coordinates)
    for x0, y0, x1, y1 in boxes:
        left, top = max(0, int(math.floor(x0)) - 1), max(0, int(math.floor(y0)) - 1)
        right, bottom = min(width, int(math.ceil(x1)) + 1), min(height, int(math.ceil(y1)) + 1)
        canvases.append((top, left, bottom - top, right - left, (x0 - left, y0 - top, x1 - left, y1 - top)))
    masks = [CroppedMask(0, 0, np.zeros((0, 0), dtype=bool)) for _ in canvases]
    order = sorted((i for i, c in enumerate(canvases) if c[2] > 0 and c[3] > 0),
                   key=lambda i: canvases[i][2] * canvases[i][3])
    start = 0
    while start < len(order):
        # The largest canvas so far sets the batch's size: add masks while the batch fits.
        end, rows, cols = start + 1, canvases[order[start]][2], canvases[order[start]][3]
        while end < len(order):
            more_rows, more_cols = max(rows, canvases[order[end]][2]), max(cols, canvases[order[end]][3])
            if (end - start + 1) * more_rows * more_cols > PASTE_BATCH_PIXELS:
                break
            end, rows, cols = end + 1, more_rows, more_cols
        batch = order[start:end]
        bits = _sample_masks(torch.stack([probabilities[i] for i in batch]),
                             torch.tensor([canvases[i][4] for i in batch], dtype=torch.float32), rows, cols, threshold)
        for i, sampled in zip(batch, bits.numpy()):
            top, left, canvas_h, canvas_w, _ = canvases[i]
            mask = CroppedMask.from_full(sampled[:canvas_h, :canvas_w])
            masks[i] = CroppedMask(mask.y0 + top, mask.x0 + left, mask.bits) if mask.bits.size else mask
        start = end
    return masks


def _sample_masks(probabilities, boxes, rows, cols, threshold):
    """N x rows x cols booleans: N M x M ``probabilities`` bilinearly sampled over their ``boxes``
    (N x 4 float32, x0 y0 x1 y1) at pixel centres and thresholded, with the arithmetic of
    Detectron2's ``paste_masks_in_image`` (so the same samples); pixels past a mask's own canvas
    are cropped by the caller."""
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    centres_y = torch.arange(rows, dtype=torch.float32) + 0.5
    centres_x = torch.arange(cols, dtype=torch.float32) + 0.5
    grid_y = (centres_y[None, :] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1
    grid_x = (centres_x[None, :] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1
    count = len(boxes)
    grid = torch.stack([grid_x[:, None, :].expand(count, rows, cols), grid_y[:, :, None].expand(count, rows, cols)], dim=3)
    sampled = torch.nn.functional.grid_sample(probabilities[:, None].float(), grid, align_corners=False)
    return sampled[:, 0] >= threshold


def detections_from_raw_instances(
    raw: Instances, image_shape, score_threshold: float, mask_threshold: float = 0.5,
    keep_probabilities: bool = False,
) -> List[Detection]:
    """Detections of one image from Detectron2's un-post-processed ROI-head output.

    ``raw`` holds boxes in the resized model input (``raw.image_size``) and
    ``pred_masks`` as N x 1 x M x M probabilities. Boxes are scaled to
    ``image_shape`` (H, W) and clipped, empty boxes dropped, as
    ``detector_postprocess`` does; then each mask is pasted at full resolution
    one at a time, over its box only. Sorted by decreasing score.
    ``keep_probabilities``: each detection keeps its M x M probabilities.
    """
    height, width = image_shape
    in_height, in_width = raw.image_size
    boxes = Boxes(raw.pred_boxes.tensor.detach().cpu().clone())
    boxes.scale(width / in_width, height / in_height)
    boxes.clip((height, width))
    scores = raw.scores.detach().cpu()
    keep = boxes.nonempty() & (scores >= score_threshold)
    order = torch.argsort(scores[keep], descending=True, stable=True)
    indices = torch.nonzero(keep).flatten()[order]
    probabilities = raw.pred_masks.detach().cpu()
    classes = raw.pred_classes.detach().cpu()

    indices = indices.tolist()
    kept_boxes = [tuple(float(v) for v in boxes.tensor[i]) for i in indices]
    masks = paste_masks([probabilities[i, 0] for i in indices], kept_boxes, (height, width), mask_threshold)
    return [
        Detection(
            box=box,
            score=float(scores[i]),
            category_id=int(classes[i]) + 1,
            mask=mask,
            probabilities=probabilities[i, 0] if keep_probabilities else None,
        )
        for i, box, mask in zip(indices, kept_boxes, masks)
    ]


def rescaled_detections(detections: List[Detection], scale_y: float, scale_x: float, shape) -> List[Detection]:
    """Detections at the working scale brought to an image of ``shape`` (H, W) that is 1 / scale
    the size: their boxes divided, their masks pasted again from their probabilities."""
    height, width = shape
    boxes = [(min(max(x0 / scale_x, 0.0), width), min(max(y0 / scale_y, 0.0), height),
              min(max(x1 / scale_x, 0.0), width), min(max(y1 / scale_y, 0.0), height))
             for x0, y0, x1, y1 in (d.box for d in detections)]
    masks = paste_masks([d.probabilities for d in detections], boxes, shape)
    return [replace(d, box=box, mask=mask, probabilities=None) for d, box, mask in zip(detections, boxes, masks)]


class NucleiPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` (strictly) and predicts the
    nuclei scoring at least ``cfg.TEST.NUCLEI.SCORE_THRESHOLD``, the evaluator's threshold.

    Like Detectron2's DefaultPredictor, but it takes 8-bit RGB, and it skips
    Detectron2's post-processing so that masks are pasted one at a time
    (see ``detections_from_raw_instances``). ``model``: an already built model in eval mode (its weights are
    then not loaded), e.g. for tests or a model wrapper.
    """

    def __init__(self, cfg, config_file="the config", model=None):
        if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN" or not cfg.MODEL.MASK_ON:
            raise UserError(
                f"{config_file}: prediction needs an instance-segmentation model "
                f"(GeneralizedRCNN with MASK_ON), not {cfg.MODEL.META_ARCHITECTURE}"
            )
        check_device(cfg.MODEL.DEVICE)
        self.cfg = cfg.clone()
        self.cfg.defrost()
        score_threshold = cfg.TEST.NUCLEI.SCORE_THRESHOLD
        # Cut in the ROI heads, before the mask head: the mask head then runs on the kept
        # boxes only, not on up to DETECTIONS_PER_IMAGE low-scoring ones.
        self.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        self.score_threshold = score_threshold
        # The diameter estimate measures only nuclei this confident (also when a caller
        # lowers score_threshold, e.g. to keep low scores for COCO AP).
        self.estimate_threshold = score_threshold
        checkpoint = None
        if model is None:
            model = build_model(self.cfg)
            model.eval()
            checkpoint = load_weights_strictly(model, self.cfg.MODEL.WEIGHTS, config_file)
            if self.cfg.TEST.CHANNELS_LAST and self.cfg.MODEL.DEVICE == "cpu":
                model.to(memory_format=torch.channels_last)
        self.model = model
        # A head comes with the detector it was trained on: from MODEL.WEIGHTS' own file, or a
        # model given ready-built takes one only from MODEL.SIZE_HEAD.WEIGHTS.
        self.size_reader = load_size_reader(self.cfg, model, checkpoint, self.cfg.MODEL.WEIGHTS)
        self.resize = T.AugmentationList(build_nuclei_augmentation(self.cfg, is_train=False))
        self.input_format = self.cfg.INPUT.FORMAT
        self.by_diameter = self.cfg.INPUT.SCALE_POLICY == "diameter"
        self.target_diameter = float(self.cfg.INPUT.NUCLEUS_DIAMETER)
        self.default_diameter = float(self.cfg.TEST.DEFAULT_DIAMETER)
        self.tile_size, self.tile_overlap = int(self.cfg.TEST.TILE_SIZE), int(self.cfg.TEST.TILE_OVERLAP)
        self.estimate_size = int(self.cfg.TEST.DIAMETER_ESTIMATE_SIZE)
        self.size_head_check = float(self.cfg.TEST.SIZE_HEAD_CHECK)
        self.proposals_per_nucleus = float(self.cfg.TEST.PROPOSALS_PER_NUCLEUS)
        self.progress = False  # progress bar over the tiles of large images

    @torch.inference_mode()
    def __call__(self, image_rgb, diameter=None, name="the image", warn=None) -> Prediction:
        """The Prediction of an H x W x 3 uint8 RGB image.

        ``diameter``: the nuclei's diameter in the image's pixels; given, the image is
        predicted at the working scale even under INPUT.SCALE_POLICY image_size. None
        under "diameter": estimated. ``warn(message)`` is told (default: stderr) when the
        estimate found no nucleus in ``name`` and TEST.DEFAULT_DIAMETER was used.
        """
        image = convert_PIL_to_numpy(Image.fromarray(image_rgb), self.input_format)
        return self.predict(image, diameter, name, warn)

    @torch.inference_mode()
    def predict(self, image, diameter=None, name="the image", warn=None) -> Prediction:
        """As ``__call__``, for an image already in INPUT.FORMAT (e.g. from a DatasetMapper)."""
        start = time.perf_counter()
        prediction = self._predict(image, diameter, name, warn)
        prediction.seconds = time.perf_counter() - start
        return prediction

    def _predict(self, image, diameter, name, warn):
        if diameter is None and not self.by_diameter:
            return Prediction(self._predict_resized(image))
        if diameter is not None:
            check_diameter(diameter, image.shape[:2], name)
            return Prediction(self.predict_at_diameter(image, float(diameter)), float(diameter), "given")
        if self.size_reader is not None:
            estimate = estimate_by_size_head(
                self.size_reader, image, self.default_diameter, self.target_diameter, self.estimate_size
            )
            found, passes = estimate.diameter, estimate.passes
            detections = self.predict_at_diameter(image, found)
            if self.size_head_check > 0:
                again = checked_diameter(detections, found, self.default_diameter, image.shape[:2],
                                         self._confident, self.size_head_check)
                if again is not None:
                    detections, found, passes = self.predict_at_diameter(image, again), again, passes + 1
            return Prediction(detections, found, "size_head", passes)
        estimate = estimate_diameter(
            self.predict_at_diameter, image, self.default_diameter, self.target_diameter,
            self.estimate_size, self._confident,
        )
        if estimate.diameter is None:
            (warn or _print_warning)(
                f"{name}: no nucleus found to estimate the diameter; used TEST.DEFAULT_DIAMETER "
                f"{self.default_diameter:g} px (pass --diameter to set it)"
            )
            found, source = self.default_diameter, "default"
        else:
            found, source = estimate.diameter, "search"
        if estimate.detections is not None and (
            estimate.diameter is not None or estimate.detections_diameter == self.default_diameter
        ):
            detections = estimate.detections  # the last pass covered the whole image at the right scale
        else:
            detections = self.predict_at_diameter(image, found)
        return Prediction(detections, found, source, estimate.passes)

    def _confident(self, detection):
        """Whether the diameter estimate measures this detection."""
        return detection.score >= self.estimate_threshold

    def _predict_resized(self, image):
        """INPUT.SCALE_POLICY image_size: the whole image resized by its short side."""
        height, width = image.shape[:2]
        resized = T.AugInput(image)
        self.resize(resized)
        tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
        inputs = [{"image": tensor, "height": height, "width": width}]
        raw = self.model.inference(inputs, do_postprocess=False)[0]
        return detections_from_raw_instances(raw, (height, width), self.score_threshold)

    @torch.inference_mode()
    def predict_at_diameter(self, image, diameter):
        """Detections of ``image`` (in INPUT.FORMAT) whose nuclei have ``diameter`` pixels: the
        image resized once to the working scale, predicted in tiles of TEST.TILE_SIZE pixels
        there, and the kept nuclei brought back to the image's own pixels."""
        scale = self.target_diameter / diameter
        height, width = image.shape[:2]
        working = rescaled(image, scale)
        new_h, new_w = working.shape[:2]
        detections = predict_tiled(working, self.predict_tile, self.tile_size, self.tile_overlap, progress=self.progress)
        if working is image:
            return [replace(d, probabilities=None) for d in detections]
        brought_back = rescaled_detections(detections, new_h / height, new_w / width, (height, width))
        return [d for d in brought_back if d.mask.area > 0]

    def predict_tile(self, tile_image):
        """Detections of one working-scale tile, in its coordinates, with their mask probabilities."""
        height, width = tile_image.shape[:2]
        tensor = torch.as_tensor(np.ascontiguousarray(tile_image.astype("float32").transpose(2, 0, 1)))
        inputs = [{"image": tensor, "height": height, "width": width}]
        with self._proposals_sized_to(height, width):
            raw = self.model.inference(inputs, do_postprocess=False)[0]
        return detections_from_raw_instances(raw, (height, width), self.score_threshold, keep_probabilities=True)

    def proposals_for(self, height, width):
        """RPN proposals kept for a working-scale tile of ``height`` x ``width`` pixels."""
        most = int(self.cfg.MODEL.RPN.POST_NMS_TOPK_TEST)
        if self.proposals_per_nucleus <= 0:
            return most
        squares = height * width / self.target_diameter**2
        return max(1, min(most, math.ceil(self.proposals_per_nucleus * squares)))

    @contextlib.contextmanager
    def _proposals_sized_to(self, height, width):
        rpn = getattr(self.model, "proposal_generator", None)
        if rpn is None or self.proposals_per_nucleus <= 0:
            yield
            return
        kept = rpn.post_nms_topk[False]
        rpn.post_nms_topk[False] = self.proposals_for(height, width)
        try:
            yield
        finally:
            rpn.post_nms_topk[False] = kept


def check_diameter(diameter, shape, name="the image", option="diameter"):
    """A UserError naming ``option`` unless MIN_DIAMETER <= diameter <= the image's larger side."""
    height, width = shape
    try:
        value = float(diameter)
    except (TypeError, ValueError):
        raise UserError(f"{option} must be a number of pixels, not {diameter!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{option} must be a positive number of pixels, not {diameter!r}")
    if value < MIN_DIAMETER:
        raise UserError(f"{option} {value:g} px is less than a pixel: not a nucleus' diameter")
    if value > max(height, width):
        raise UserError(f"{name}: {option} {value:g} px is larger than the image ({width} x {height} px)")


def _print_warning(message):
    print(f"warning: {message}", file=sys.stderr)
