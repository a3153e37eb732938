from .checkpoint import NucleiCheckpointer, load_weights_strictly, read_checkpoint
from .setup import load_cfg, setup_cfg
from .trainer import Trainer

__all__ = ["NucleiCheckpointer", "Trainer", "load_cfg", "load_weights_strictly", "read_checkpoint", "setup_cfg"]
