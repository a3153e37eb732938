"""Config assembly shared by the command-line tools."""
import os

from detectron2.config import get_cfg
from detectron2.engine import default_setup

from ..config import add_maskrcnnpp_config


def load_cfg(config_file: str, opts=()):
    """A frozen-free config: Detectron2's defaults + maskrcnnpp's keys + file + overrides."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file not found: {config_file}")
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


def setup_cfg(args):
    """Build the config from parsed Detectron2 arguments, freeze it, set up logging/output."""
    cfg = load_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
