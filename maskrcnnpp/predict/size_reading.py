"""The size head put to work: loading it beside its detector and reading a view's scale."""
import math

import torch

from ..data.size_views import rescaled_view
from ..errors import UserError
from ..modeling.size_head import build_size_head, detector_features
from ..weights import read_checkpoint, state_mismatch

__all__ = ["SizeReader", "load_size_reader"]


class SizeReader:
    """``reader(image, scale, region)``: the size head's reading of ``image[region]`` (H x W x C
    in INPUT.FORMAT) resized by ``scale``, as (view diameter / working diameter, the view's
    real scale); the ratio is clamped to the range the head was trained on."""

    def __init__(self, model, head, view_range):
        self.model, self.head = model, head.eval()
        self.low, self.high = math.log(view_range[0]), math.log(view_range[1])

    @torch.inference_mode()
    def __call__(self, image, scale, region=None):
        view, real_scale = rescaled_view(image, scale, region)
        tensor = torch.as_tensor(view.astype("float32").transpose(2, 0, 1).copy())
        log_ratio = float(self.head(detector_features(self.model, tensor, self.head.in_features))[0])
        return math.exp(min(max(log_ratio, self.low), self.high)), real_scale


def load_size_reader(cfg, model, checkpoint=None, weights_name=""):
    """The SizeReader of ``cfg`` on ``model``, or None when the diameter is searched for.

    The head's weights are the "size_head" entry of MODEL.SIZE_HEAD.WEIGHTS' file, else of
    ``checkpoint`` (the MODEL.WEIGHTS file the detector was just loaded from, named
    ``weights_name``). TEST.DIAMETER_ESTIMATE "auto" takes the head when one is found;
    "size_head" requires one (UserError naming the file otherwise)."""
    mode = cfg.TEST.DIAMETER_ESTIMATE
    if cfg.INPUT.SCALE_POLICY != "diameter" or mode == "search":
        return None
    if cfg.MODEL.SIZE_HEAD.WEIGHTS:
        weights_name = cfg.MODEL.SIZE_HEAD.WEIGHTS
        checkpoint = read_checkpoint(weights_name)
    state = (checkpoint or {}).get("size_head")
    if state is None:
        if mode == "size_head":
            where = f"{weights_name}: holds no size head" if checkpoint is not None else "no size head given"
            raise UserError(
                f"{where} (TEST.DIAMETER_ESTIMATE size_head); train one with maskrcnnpp-train-size-head and "
                "name its file in MODEL.SIZE_HEAD.WEIGHTS, or set TEST.DIAMETER_ESTIMATE search"
            )
        return None
    head = build_size_head(cfg, model)
    state = {k: torch.as_tensor(v).float() for k, v in state.items()}
    problem = state_mismatch(head, state)
    if problem:
        raise UserError(f"{weights_name}: its size head does not match MODEL.SIZE_HEAD: {problem}")
    head.load_state_dict(state, strict=True)
    head.to(model.pixel_mean.device)
    return SizeReader(model, head, tuple(cfg.MODEL.SIZE_HEAD.VIEW_RANGE))
