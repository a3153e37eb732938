"""Reading a config file and its overrides into a checked config, with one-line errors.

Below engine/ and predict/, which both load configs.
"""
import os

import yaml
from detectron2.config import get_cfg

from .config import add_maskrcnnpp_config, check_scale_config, check_solver_config
from .errors import ConfigError, MissingFileError, UserError, error_reason
from .modeling.nested_fpn import NESTED_FPN_BUILDERS, validate_nested_fpn_config
from .modeling.unetpp import validate_unetpp_config

__all__ = ["check_config", "load_cfg"]


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
    except (TypeError, AttributeError) as e:  # fvcore on a file that is not a mapping of keys
        raise ConfigError(_not_a_mapping(config_file) or f"{config_file}: cannot read config ({error_reason(e)})") from None
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; {opts[-1]!r} has no value")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise ConfigError(f"config override: {_yacs_reason(e)}") from None
    check_config(cfg)
    return cfg


def check_config(cfg):
    """Every key a builder, loader or the solver reads, checked once, when the config is loaded:
    the builders trust it, as Detectron2's do. Raises ConfigError naming the key."""
    check_scale_config(cfg)  # e.g. a tile smaller than its overlap: named now, not at the first image
    check_solver_config(cfg)
    if cfg.MODEL.BACKBONE.NAME in NESTED_FPN_BUILDERS:
        validate_nested_fpn_config(cfg)
    if cfg.MODEL.META_ARCHITECTURE == "SemanticUNetPlusPlus":
        validate_unetpp_config(cfg)


def _not_a_mapping(config_file):
    """"<file>: ..." for the first file of ``config_file``'s _BASE_ chain whose content is not a
    mapping of config keys (empty, a scalar, a list), or None."""
    path, seen = config_file, set()
    while path and path not in seen and os.path.isfile(path):
        seen.add(path)
        try:
            with open(path, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            return None
        if not isinstance(content, dict):
            kind = type(content).__name__
            found = "nothing (an empty file)" if content is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
            return f"{path}: a config file must hold a mapping of keys (KEY: value lines), but it holds {found}"
        base = content.get("_BASE_")
        if not isinstance(base, str):
            return None
        base = os.path.expanduser(base)
        path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    return None


def _yacs_reason(error):
    text = error.args[0] if error.args and isinstance(error.args[0], str) else error_reason(error)
    return error_reason(text)
