"""SOLVER.OPTIMIZER: Detectron2's SGD, or Adam as the UNet++ paper trained with."""
import torch
from detectron2.solver import build_optimizer as build_sgd_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..errors import ConfigError

OPTIMIZERS = ("SGD", "ADAM")


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"SOLVER.OPTIMIZER={cfg.SOLVER.OPTIMIZER!r}; allowed values: {list(OPTIMIZERS)}"
        )
    if name == "SGD":
        return build_sgd_optimizer(cfg, model)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.Adam)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )
