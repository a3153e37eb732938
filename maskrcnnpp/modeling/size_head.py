"""A small head that reads the nuclei's size off a trained detector's features.

It sees the bottom-up (ResNet) features of an image view and regresses
``log(nucleus diameter in the view / INPUT.NUCLEUS_DIAMETER)``: how far the view is from
the working scale. Each level's features go through a 1 x 1 convolution and are pooled
over the whole view (mean and max), so the head takes views of any size; the levels'
pooled vectors are joined and mapped to one number. The detector stays frozen: the head
is trained on its own (engine/size_head_training.py) on views rescaled over
MODEL.SIZE_HEAD.VIEW_RANGE, whose labels are the images' annotated median diameters.
"""
from typing import Dict, Sequence

import torch
from detectron2.layers import Conv2d, ShapeSpec
from torch import nn

from ..errors import ConfigError

__all__ = ["SizeHead", "build_size_head", "detector_features", "feature_extractor"]


class SizeHead(nn.Module):
    def __init__(self, input_shapes: Dict[str, ShapeSpec], in_features: Sequence[str], channels: int):
        super().__init__()
        self.in_features = tuple(in_features)
        self.reduce = nn.ModuleList(
            Conv2d(input_shapes[f].channels, channels, kernel_size=1, activation=nn.ReLU()) for f in self.in_features
        )
        self.regress = nn.Sequential(
            nn.Linear(2 * channels * len(self.in_features), channels), nn.ReLU(), nn.Linear(channels, 1)
        )

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """N log ratios (view diameter / working diameter) of N views' features."""
        pooled = []
        for name, reduce in zip(self.in_features, self.reduce):
            x = reduce(features[name])
            pooled += [x.mean(dim=(2, 3)), x.amax(dim=(2, 3))]
        return self.regress(torch.cat(pooled, dim=1)).squeeze(1)


def feature_extractor(model, in_features: Sequence[str]) -> nn.Module:
    """The part of a Detectron2 detector that gives ``in_features``: its backbone's bottom-up
    network (the ResNet under an FPN or nested FPN) when that has them all (the cheaper
    pass), else the whole backbone (e.g. for "p2".."p6")."""
    bottom_up = getattr(model.backbone, "bottom_up", None)
    if bottom_up is not None and all(f in bottom_up.output_shape() for f in in_features):
        return bottom_up
    return model.backbone


def build_size_head(cfg, model) -> SizeHead:
    """The head of MODEL.SIZE_HEAD on ``model``'s features."""
    in_features = cfg.MODEL.SIZE_HEAD.IN_FEATURES
    bottom_up = getattr(model.backbone, "bottom_up", None)
    known = list(bottom_up.output_shape() if bottom_up is not None else []) + list(model.backbone.output_shape())
    unknown = [f for f in in_features if f not in known]
    if unknown or not in_features:
        raise ConfigError(f"MODEL.SIZE_HEAD.IN_FEATURES: {unknown or 'none given'}; choose among the detector's "
                          f"features ({', '.join(known)})")
    shapes = feature_extractor(model, in_features).output_shape()
    return SizeHead(shapes, in_features, int(cfg.MODEL.SIZE_HEAD.CHANNELS))


def detector_features(model, image: torch.Tensor, in_features: Sequence[str]) -> Dict[str, torch.Tensor]:
    """``in_features`` of one C x H x W image in INPUT.FORMAT (0-255), normalised as the
    detector normalises its input (and padded as it pads, for the whole backbone)."""
    x = (image.to(model.pixel_mean.device).float() - model.pixel_mean) / model.pixel_std
    extractor = feature_extractor(model, in_features)
    divisor = getattr(extractor, "size_divisibility", 0) if extractor is model.backbone else 0
    if divisor > 1:
        height, width = x.shape[-2:]
        x = nn.functional.pad(x, (0, -width % divisor, 0, -height % divisor))
    features = extractor(x[None])
    return {f: features[f] for f in in_features}
