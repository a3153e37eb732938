"""Config assembly shared by the command-line tools, with one-line errors for user mistakes."""
import difflib
import os

import yaml
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup

from ..config import add_maskrcnnpp_config, check_scale_config
from ..data.datasets import is_registered
from ..errors import ConfigError, MissingFileError, UserError, error_reason
from ..modeling.nested_fpn import validate_nested_fpn_config
from .checkpoint import read_checkpoint

__all__ = ["check_datasets", "check_weights", "checked_cfg", "load_cfg", "setup_cfg"]

_CLOSE_MATCHES = 3


def load_cfg(config_file: str, opts=()):
    """A frozen-free config: Detectron2's defaults + maskrcnnpp's keys + file + overrides.

    Raises UserError (ConfigError for a bad key or value) naming the file or key.
    """
    if not os.path.isfile(config_file):
        raise MissingFileError(f"{config_file}: config file not found")
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    try:
        cfg.merge_from_file(config_file)
    except (OSError, yaml.YAMLError) as e:  # a missing _BASE_ file, broken YAML
        raise UserError(f"{config_file}: cannot read config ({error_reason(e)})") from None
    except (KeyError, ValueError, AssertionError) as e:  # yacs: unknown key, wrong type
        raise ConfigError(f"{config_file}: {_yacs_reason(e)}") from None
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; {opts[-1]!r} has no value")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise ConfigError(f"config override: {_yacs_reason(e)}") from None
    check_scale_config(cfg)  # e.g. a tile smaller than its overlap: named now, not at the first image
    return cfg


def _yacs_reason(error):
    text = error.args[0] if error.args and isinstance(error.args[0], str) else error_reason(error)
    return error_reason(text)


def check_datasets(cfg, keys=("TRAIN", "TEST")):
    """Every name in DATASETS.<key> must be registered, and its files present (checked
    before training, not when evaluation first reads the test set). An unknown name first
    rescans $DETECTRON2_DATASETS, for a set imported after the package was imported."""
    for key in keys:
        for name in cfg.DATASETS[key]:
            if is_registered(name):
                _check_dataset_files(key, name)
                continue
            registered = DatasetCatalog.list()
            close = difflib.get_close_matches(name, registered, n=_CLOSE_MATCHES, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"DATASETS.{key}: unknown dataset {name!r} ({hint}{len(registered)} datasets are registered; "
                "DSB2018 needs `python tools/prepare_dsb2018.py` first, your own label images "
                "`python tools/import_labels.py`, see the README)"
            )


def _check_dataset_files(key, name):
    metadata = MetadataCatalog.get(name)
    paths = list(metadata.get("json_files", [])) + [metadata.get("json_file", None), metadata.get("image_root", None)]
    for path in filter(None, paths):
        if not os.path.exists(path):
            raise MissingFileError(
                f"DATASETS.{key}: dataset {name!r} is not prepared: {path} does not exist "
                "(DSB2018: run `python tools/prepare_dsb2018.py --source stage1_train.zip`, see the README)"
            )


def check_weights(cfg):
    """MODEL.WEIGHTS, when set, must be a readable checkpoint (read once, early)."""
    if cfg.MODEL.WEIGHTS:
        read_checkpoint(cfg.MODEL.WEIGHTS)


def checked_cfg(args):
    """The config of parsed Detectron2 arguments, its datasets and weights checked (UserError)."""
    cfg = load_cfg(args.config_file, args.opts)
    if cfg.MODEL.BACKBONE.NAME == "build_resnet_nested_fpn_backbone":
        validate_nested_fpn_config(cfg)  # as the builder will, but before workers are launched
    check_datasets(cfg, ("TEST",) if args.eval_only else ("TRAIN", "TEST"))
    check_weights(cfg)
    return cfg


def setup_cfg(args, cfg=None):
    """Freeze the config of parsed Detectron2 arguments and set up logging/output; ``cfg``: the
    one :func:`checked_cfg` already gave (else it is built and checked here)."""
    cfg = checked_cfg(args) if cfg is None else cfg
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
