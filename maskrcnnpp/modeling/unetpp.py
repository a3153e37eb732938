"""Semantic UNet++ (and its control groups) as a Detectron2 meta-architecture.

encoder -> NestedDecoder -> 1x1 heads on X^{0,1..L} (deep supervision) or on X^{0,L}.
In eval mode each image is predicted by overlapping windows and returned as
``{"sem_seg": 1 x H x W foreground probability}`` at the input's "height"/"width".
With INFERENCE "L<k>" the model runs as ``pruned(k)``: only the encoder levels
0..k and the nodes X^{i,j} with i + j <= k that X^{0,k} needs.
"""
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList
from torch import nn

from ..errors import ConfigError
from .nested_decoder import (
    NestedDecoder,
    build_nested_decoder,
    check_choice,
    check_decoder_config,
    check_group_norm_config,
    node_name,
)
from .plain_encoder import build_plain_encoder
from .resnet_encoder import build_resnet_encoder
from .segmentation_loss import bce_and_dice_losses
from .sliding_window import sliding_window_predict

__all__ = ["SemanticUNetPlusPlus", "ENCODERS", "parse_inference_mode", "validate_unetpp_config"]

ENCODERS = ("plain", "resnet")
IGNORE_VALUE = 255


def parse_inference_mode(mode: str, depth: int) -> int:
    """0 for "ensemble", k for "L<k>"; a ValueError naming the setting otherwise."""
    if mode == "ensemble":
        return 0
    allowed = ["ensemble"] + [f"L{k}" for k in range(1, depth + 1)]
    level = int(mode[1:]) if mode[:1] == "L" and mode[1:].isdigit() else None
    if level is None or level < 1:
        raise ConfigError(
            f"MODEL.UNETPP.INFERENCE={mode!r} is not an inference mode; allowed: {allowed}"
        )
    if level > depth:
        raise ConfigError(
            f"MODEL.UNETPP.INFERENCE={mode!r} prunes at level {level}, deeper than the model "
            f"(MODEL.UNETPP.DEPTH={depth}); allowed: {allowed}"
        )
    return level


def validate_unetpp_config(cfg) -> None:
    """Raise ConfigError naming the MODEL.UNETPP key that cannot work (called when the config
    is loaded; the builder trusts it)."""
    u = cfg.MODEL.UNETPP
    check_choice("MODEL.UNETPP.ENCODER", u.ENCODER, ENCODERS)
    check_decoder_config(u, "MODEL.UNETPP")
    if len(u.FILTERS) != u.DEPTH + 1:
        raise ConfigError(
            f"MODEL.UNETPP.FILTERS={list(u.FILTERS)} needs DEPTH + 1 = {u.DEPTH + 1} "
            f"entries (MODEL.UNETPP.DEPTH={u.DEPTH})"
        )
    # The ResNet encoder has MODEL.RESNETS.NORM; the decoder leaves the deepest filter unused.
    normalised = u.FILTERS if u.ENCODER == "plain" else u.FILTERS[:-1]
    check_group_norm_config(u, "MODEL.UNETPP", {"MODEL.UNETPP.FILTERS": normalised})


@META_ARCH_REGISTRY.register()
class SemanticUNetPlusPlus(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: NestedDecoder,
        heads: Mapping[str, nn.Module],
        inference: str,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        dice_smooth: float = 1.0,
        window_size: int = 96,
        window_overlap: float = 0.5,
        window_batch_size: int = 8,
    ):
        """
        Args:
            encoder: returns X^{0,0} .. X^{L,0} (finest first) from an image batch; has
                ``out_channels``, ``size_divisibility`` and ``pruned(num_levels)``.
            decoder: the grid over the encoder's features.
            heads: {node_name(0, j): module giving N x 1 x h x w logits} on nodes X^{0,j}
                of the decoder (see ``build_heads``); all are trained, and averaged at
                inference unless ``inference`` picks one.
            inference: "ensemble" or "L1" .. "L<L>" (see parse_inference_mode).
            window_size, window_overlap, window_batch_size: sliding-window inference.
        """
        super().__init__()
        depth = decoder.depth
        top_row = [(0, j) for j in range(1, depth + 1) if (0, j) in decoder.grid]
        self.head_nodes = [n for n in top_row if node_name(*n) in heads]
        if not heads or len(self.head_nodes) != len(heads):
            raise ValueError(
                f"heads {sorted(heads)} must sit on nodes X^{{0,j}} of the decoder, "
                f"which has {[node_name(*n) for n in top_row]}"
            )
        self.inference_level = parse_inference_mode(inference, depth)
        if self.inference_level and (0, self.inference_level) not in self.head_nodes:
            raise ConfigError(
                f"MODEL.UNETPP.INFERENCE={inference!r} uses the head on "
                f"X^{{0,{self.inference_level}}}, which exists only with "
                "MODEL.UNETPP.DEEP_SUPERVISION=True"
            )
        if not 0 <= window_overlap < 1:
            raise ConfigError(
                f"MODEL.UNETPP.SLIDING_WINDOW.OVERLAP={window_overlap} must be in [0, 1)"
            )
        if window_size % encoder.size_divisibility:
            raise ConfigError(
                f"MODEL.UNETPP.SLIDING_WINDOW.SIZE={window_size} must be 0 or a multiple of "
                f"the encoder's total stride {encoder.size_divisibility}"
            )
        self.encoder = encoder
        # Nodes no head needs (e.g. UNet^e without deep supervision) would get no gradient.
        self.decoder = decoder.pruned(self.head_nodes)
        self.heads = nn.ModuleDict({node_name(*n): heads[node_name(*n)] for n in self.head_nodes})
        self.inference_mode = inference
        self.depth = depth
        self.loss_weights = {"bce": bce_weight, "dice": dice_weight}
        self.dice_smooth = dice_smooth
        self.window_size = window_size
        self.window_overlap = window_overlap
        self.window_batch_size = window_batch_size
        # as_tensor: a pruned model shares its parent's (already placed) tensors.
        self.register_buffer("pixel_mean", torch.as_tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.as_tensor(pixel_std).view(-1, 1, 1), False)
        # Channels-last convolutions: the same results, and on a CPU oneDNN trains UNet++ about
        # 10 % faster (benchmarks/README.md, "Exact speed-ups").
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg):
        u = cfg.MODEL.UNETPP
        in_channels = len(cfg.MODEL.PIXEL_MEAN)
        if u.ENCODER == "plain":
            encoder = build_plain_encoder(in_channels, u.FILTERS, u.NORM, u.GN_GROUPS)
        else:
            encoder = build_resnet_encoder(cfg, in_channels, u.DEPTH + 1)
        check_patch_size(u.PATCH_SIZE, encoder.size_divisibility)
        decoder = build_nested_decoder(
            encoder.out_channels,
            list(u.FILTERS),
            connectivity=u.CONNECTIVITY,
            norm=u.NORM,
            gn_groups=u.GN_GROUPS,
            block=u.BLOCK,
            upsample=u.UPSAMPLE,
        )
        return {
            "encoder": encoder,
            "decoder": decoder,
            "heads": build_heads(decoder, u.DEEP_SUPERVISION),
            "inference": u.INFERENCE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "bce_weight": u.LOSS.BCE_WEIGHT,
            "dice_weight": u.LOSS.DICE_WEIGHT,
            "dice_smooth": u.LOSS.DICE_SMOOTH,
            "window_size": u.SLIDING_WINDOW.SIZE,
            "window_overlap": u.SLIDING_WINDOW.OVERLAP,
            "window_batch_size": u.SLIDING_WINDOW.BATCH_SIZE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def size_divisibility(self) -> int:
        return self.encoder.size_divisibility

    def pruned(self, level: int) -> "SemanticUNetPlusPlus":
        """The sub-network L_level (encoder levels 0..level, nodes needed by X^{0,level}
        and its head), sharing this model's weights; it holds fewer parameters and
        computes less. Its forward predicts with that one head."""
        parse_inference_mode(f"L{level}", self.depth)
        target = (0, level)
        if target not in self.head_nodes:
            raise ConfigError(
                f"pruning at L{level} needs the head on X^{{0,{level}}}, which exists only "
                "with MODEL.UNETPP.DEEP_SUPERVISION=True"
            )
        name = node_name(*target)
        small = SemanticUNetPlusPlus(
            encoder=self.encoder.pruned(level + 1),
            decoder=self.decoder.pruned([target]),
            heads={name: self.heads[name]},
            inference=f"L{level}",
            pixel_mean=self.pixel_mean,
            pixel_std=self.pixel_std,
            bce_weight=self.loss_weights["bce"],
            dice_weight=self.loss_weights["dice"],
            dice_smooth=self.dice_smooth,
            window_size=self.window_size,
            window_overlap=self.window_overlap,
            window_batch_size=self.window_batch_size,
        )
        return small.train(self.training)

    def head_logits(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{node name: N x 1 x H x W logits} of every head, for a normalised N x C x H x W batch."""
        features = self.encoder(images.contiguous(memory_format=torch.channels_last))
        nodes = self.decoder(features, targets=self.head_nodes)
        logits = {}
        for name, head in self.heads.items():
            out = head(nodes[name])
            if out.shape[-2:] != images.shape[-2:]:  # encoders whose level 0 is strided
                out = F.interpolate(
                    out, size=images.shape[-2:], mode="bilinear", align_corners=False
                )
            logits[name] = out
        return logits

    def predict_probability(self, images: torch.Tensor) -> torch.Tensor:
        """N x 1 x H x W foreground probability: the mean of the heads' sigmoids."""
        probs = [torch.sigmoid(x) for x in self.head_logits(images).values()]
        return torch.stack(probs).mean(0)

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if any("sem_seg" not in x for x in batched_inputs):
            raise ValueError("training SemanticUNetPlusPlus needs a 'sem_seg' target per input")
        images = ImageList.from_tensors(
            [self._normalize(x["image"]) for x in batched_inputs], self.size_divisibility
        ).tensor
        targets = ImageList.from_tensors(
            [x["sem_seg"].to(self.device) for x in batched_inputs],
            self.size_divisibility,
            pad_value=IGNORE_VALUE,
        ).tensor
        return self.losses(self.head_logits(images), targets)

    def losses(self, logits: Dict[str, torch.Tensor], targets: torch.Tensor):
        per_head = [
            bce_and_dice_losses(x, targets, IGNORE_VALUE, self.dice_smooth) for x in logits.values()
        ]
        bce, dice = zip(*per_head)
        return {
            "loss_bce": self.loss_weights["bce"] * torch.stack(bce).mean(),
            "loss_dice": self.loss_weights["dice"] * torch.stack(dice).mean(),
        }

    @torch.no_grad()
    def inference(self, batched_inputs: List[dict]):
        model = self.pruned(self.inference_level) if self.inference_level else self
        results = []
        for x in batched_inputs:
            image = self._normalize(x["image"])
            prob = sliding_window_predict(
                model.predict_probability,
                image,
                self.window_size,
                self.window_overlap,
                self.size_divisibility,
                self.window_batch_size,
            )
            size = (x.get("height", prob.shape[-2]), x.get("width", prob.shape[-1]))
            if tuple(prob.shape[-2:]) != size:
                prob = F.interpolate(prob[None], size=size, mode="bilinear", align_corners=False)[0]
            results.append({"sem_seg": prob})
        return results

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 3 or image.shape[0] != self.pixel_mean.numel():
            raise ValueError(
                f"expected a C x H x W image with C = {self.pixel_mean.numel()} channels "
                f"(len(MODEL.PIXEL_MEAN), INPUT.FORMAT), got shape {tuple(image.shape)}"
            )
        return (image.to(self.device).float() - self.pixel_mean) / self.pixel_std


def build_heads(decoder: NestedDecoder, deep_supervision: bool) -> Dict[str, nn.Module]:
    """1x1 conv heads on X^{0,1} .. X^{0,L} (deep supervision), or on X^{0,L} alone."""
    depth = decoder.depth
    nodes = [(0, j) for j in (range(1, depth + 1) if deep_supervision else [depth])]
    if any(n not in decoder.grid for n in nodes):
        raise ConfigError(
            "MODEL.UNETPP.DEEP_SUPERVISION=True needs heads on X^{0,1}..X^{0,L}, but "
            f"MODEL.UNETPP.CONNECTIVITY={decoder.connectivity!r} has no such nodes "
            "below X^{0,L}; turn deep supervision off for it"
        )
    return {node_name(*n): nn.Conv2d(decoder.channels(*n), 1, kernel_size=1) for n in nodes}


def check_patch_size(patch_size: int, divisibility: int) -> None:
    if patch_size <= 0 or patch_size % divisibility:
        raise ConfigError(
            f"MODEL.UNETPP.PATCH_SIZE={patch_size} must be a positive multiple of the encoder's "
            f"total stride {divisibility} (2^MODEL.UNETPP.DEPTH for the plain encoder)"
        )
