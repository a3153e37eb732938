"""SOLVER.OPTIMIZER: Detectron2's SGD or Adam, with Detectron2's parameter groups."""
import pytest
import torch
from detectron2.config import get_cfg

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.engine.optimizer import build_optimizer


def make_cfg():
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    return cfg


def small_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Conv2d(4, 1, 1))


def test_optimizer_setting():
    model = small_model()
    cfg = make_cfg()
    cfg.SOLVER.OPTIMIZER = "ADAM"
    assert isinstance(build_optimizer(cfg, model), torch.optim.Adam)
    cfg.SOLVER.OPTIMIZER = "SGD"
    assert isinstance(build_optimizer(cfg, model), torch.optim.SGD)
    cfg.SOLVER.OPTIMIZER = "LION"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER='LION'"):
        build_optimizer(cfg, model)


def test_adam_takes_the_solver_rate_and_weight_decays():
    model = small_model()
    cfg = make_cfg()
    cfg.SOLVER.OPTIMIZER = "adam"  # any case
    cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WEIGHT_DECAY_NORM = 3e-4, 1e-4, 0.0
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.Adam)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert {g["lr"] for g in optimizer.param_groups} == {3e-4}
    assert [decay[id(p)] for p in model[1].parameters()] == [0.0, 0.0]  # GroupNorm: WEIGHT_DECAY_NORM
    assert decay[id(model[0].weight)] == decay[id(model[2].weight)] == 1e-4
    assert len(decay) == len(list(model.parameters()))  # every parameter is optimised
