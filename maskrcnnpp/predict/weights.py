"""Loading a checkpoint that must match the model built from the config, key for key."""
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from .errors import PredictError

__all__ = ["load_matching_weights", "describe_mismatch"]

_KEYS_SHOWN = 3


def load_matching_weights(model, weights, config_file="the config"):
    """Load ``weights`` into ``model``; raise PredictError naming the keys if they do not match.

    Detectron2's checkpointer only logs missing / unexpected keys and goes on
    with those parameters randomly initialised, which silently yields a useless
    model; for prediction that is an error.
    """
    if not weights:
        raise PredictError(f"no weights given: set MODEL.WEIGHTS to a checkpoint trained with {config_file}")
    if "://" not in weights and not os.path.isfile(weights):
        raise PredictError(f"{weights}: weights file not found")
    checkpointer = DetectionCheckpointer(model)
    try:
        path = PathManager.get_local_path(weights)
        checkpoint = checkpointer._load_file(path)
    except Exception as e:  # not a checkpoint, truncated, refused by torch.load(weights_only=True)
        raise PredictError(f"{weights}: cannot load weights ({_short(e)})") from None
    if "model" not in checkpoint:  # a bare state_dict
        checkpoint = {"model": checkpoint}
    # _load_model (not load) because it returns the incompatible keys rather than only logging them.
    incompatible = checkpointer._load_model(checkpoint)
    reshaped = {key for key, _, _ in incompatible.incorrect_shapes}
    problem = describe_mismatch(
        [k for k in incompatible.missing_keys if k not in reshaped],  # fvcore lists them twice
        incompatible.unexpected_keys,
        incompatible.incorrect_shapes,
    )
    if problem:
        raise PredictError(f"{weights}: weights do not match {config_file}: {problem}")


def describe_mismatch(missing, unexpected, incorrect_shapes):
    """One line naming the first few keys of each kind, or "" when everything matches."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_first(sorted(missing))})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_first(sorted(unexpected))})")
    if incorrect_shapes:
        shapes = [f"{k} {tuple(a)} in file vs {tuple(b)} in model" for k, a, b in incorrect_shapes]
        parts.append(f"{len(shapes)} keys of another shape ({_first(shapes)})")
    return "; ".join(parts)


def _short(error, limit=240):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first(items):
    shown = ", ".join(items[:_KEYS_SHOWN])
    return shown + (f", ... {len(items) - _KEYS_SHOWN} more" if len(items) > _KEYS_SHOWN else "")
