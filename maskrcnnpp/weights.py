"""Checkpoint files: reading one without a model, and loading it strictly into a model.

Detectron2's checkpointer only logs missing or unexpected keys, so a checkpoint of another
model evaluates as a half-random one; evaluation and prediction load through
:func:`load_weights_strictly` instead. Kept below engine/ and predict/, which both use it.
"""
import logging
import os
import pickle
import zipfile

import torch
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.utils.file_io import PathManager

from .errors import MissingFileError, UserError, error_reason

__all__ = ["describe_mismatch", "load_weights_strictly", "read_checkpoint", "state_mismatch", "weights_mismatch"]

logger = logging.getLogger(__name__)

_KEYS_SHOWN = 3
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTOCOL_2_OR_LATER = b"\x80"


def read_checkpoint(path):
    """The checkpoint at ``path`` as a dict with a ``"model"`` state dict.

    Detectron2 has no public call that reads a checkpoint without loading it into
    a model (its checkpointer's file reader is private, and current Detectron2
    refuses to run it outside ``load()``), nor one that returns the key
    mismatch; so the file is read here with ``torch.load`` / ``pickle``, in the
    formats Detectron2 reads: ``.pth`` from ``torch.save`` (a bare state dict or
    ``{"model": ...}``) and model-zoo ``.pkl`` pickles. Raises UserError naming
    the file and the real reason (missing, empty, truncated, not a checkpoint).
    """
    local = _local_path(path)
    with open(local, "rb") as f:
        head = f.read(4)
    if not head:
        raise UserError(f"{path}: not a checkpoint (the file is empty)")
    if head == _ZIP_MAGIC and not zipfile.is_zipfile(local):
        raise UserError(f"{path}: truncated checkpoint (an incomplete zip archive; was its writing interrupted?)")
    if head != _ZIP_MAGIC and not head.startswith(_PICKLE_PROTOCOL_2_OR_LATER):
        raise UserError(
            f"{path}: not a checkpoint (neither a PyTorch .pth zip archive nor a pickle; it starts with {head!r})"
        )
    try:
        if local.endswith(".pkl"):
            with open(local, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        else:
            data = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as e:  # zipfile/pickle/torch raise many types for a corrupt file
        raise UserError(f"{path}: corrupt checkpoint ({type(e).__name__}: {error_reason(e)})") from None
    return _as_detectron2_checkpoint(data, path, is_pkl=local.endswith(".pkl"))


def _local_path(path):
    if not path:
        raise UserError("no weights given: set MODEL.WEIGHTS to a checkpoint file")
    if "://" in path:
        try:
            return PathManager.get_local_path(path)
        except Exception as e:  # no handler, no network, ...
            raise UserError(f"{path}: cannot fetch weights ({error_reason(e)})") from None
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: weights file not found")
    return path


def _as_detectron2_checkpoint(data, path, is_pkl):
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a checkpoint (it holds a {type(data).__name__}, not a dict of weights)")
    if is_pkl:  # Detectron2 model zoo ({"model", "__author__"}) or Caffe2 blobs, as Detectron2 reads them
        if "model" in data and "__author__" in data:
            return dict(data, matching_heuristics=True)
        blobs = data.get("blobs", data)
        blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
        return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
    if "model" not in data and "size_head" not in data:  # a bare state dict
        data = {"model": data}
    if not isinstance(data.get("model", {}), dict):
        raise UserError(f"{path}: not a checkpoint (its 'model' entry is not a dict of weights)")
    return data


def _model_state(checkpoint, model):
    """The checkpoint's state dict renamed as ``model`` names its parameters."""
    state = {k: torch.as_tensor(v) for k, v in checkpoint["model"].items()}
    if checkpoint.get("matching_heuristics"):
        state = align_and_update_state_dicts(
            model.state_dict(), state, c2_conversion=checkpoint.get("__author__") == "Caffe2"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def weights_mismatch(model, checkpoint):
    """One line naming the keys that differ between ``model`` and ``checkpoint``, or ""."""
    if "model" not in checkpoint:
        return "the file holds a size head only, no detector weights"
    return state_mismatch(model, _model_state(checkpoint, model))


def state_mismatch(model, state):
    """One line naming the keys of ``state`` that differ from ``model``'s (any module), or ""."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    reshaped = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return describe_mismatch(missing, unexpected, reshaped)


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


def _first(items):
    shown = ", ".join(items[:_KEYS_SHOWN])
    return shown + (f", ... {len(items) - _KEYS_SHOWN} more" if len(items) > _KEYS_SHOWN else "")


def load_weights_strictly(model, weights, config_file="the config"):
    """Load ``weights`` into ``model``; raise UserError naming the file and keys unless every
    key and shape matches. For evaluation and prediction, where a partly random model
    would give a silent wrong answer. Returns the checkpoint read (it may carry more, e.g. a
    size head)."""
    if not weights:
        raise UserError(f"no weights given: set MODEL.WEIGHTS to a checkpoint trained with {config_file}")
    checkpoint = read_checkpoint(weights)
    if "model" not in checkpoint:
        raise UserError(f"{weights}: holds a size head only, no detector weights: give it as MODEL.SIZE_HEAD.WEIGHTS "
                        "and the detector's checkpoint as MODEL.WEIGHTS")
    state = _model_state(checkpoint, model)
    problem = state_mismatch(model, state)
    if problem:
        raise UserError(f"{weights}: weights do not match {config_file}: {problem}")
    model.load_state_dict(state, strict=True)
    logger.info(f"Loaded weights from {weights} (every key matches the model)")
    return checkpoint
