"""UNet++'s hybrid loss: pixel-wise binary cross-entropy plus soft Dice."""
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["bce_and_dice_losses"]


def bce_and_dice_losses(
    logits: torch.Tensor, targets: torch.Tensor, ignore_value: int = 255, smooth: float = 1.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE over valid pixels and 1 - soft Dice over the batch's valid pixels.

    Args:
        logits: N x 1 x H x W foreground logits.
        targets: N x H x W with 1 = foreground, 0 = background, ``ignore_value`` = ignored.
        smooth: added to the Dice numerator and denominator, so that a batch with no
            foreground and no predicted foreground scores a Dice of 1.
    """
    logits = logits[:, 0]
    valid = targets != ignore_value
    target = (targets == 1).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits[valid], target[valid])
    prob = torch.sigmoid(logits) * valid
    target = target * valid
    dice = (2 * (prob * target).sum() + smooth) / (prob.sum() + target.sum() + smooth)
    return bce, 1 - dice
