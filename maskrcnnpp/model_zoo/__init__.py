"""The project's own trained models, loadable by name: ``MODEL.WEIGHTS maskrcnnpp://<name>``.

Each model is a folder ``maskrcnnpp/model_zoo/<name>/`` holding

    model.json   {"name", "weights" (file name), "sha256", "default" (bool), "command" (how it was
                  trained), "metrics" (how it scores), ...}
    (the weights file holds the detector, "model", and its size head, "size_head")
    config.yaml  the whole config it was trained with (a dump: it never drifts with the configs/)
    <weights>    its weights in half precision, at most 32 MiB

``maskrcnnpp://<name>`` is resolved by a Detectron2 PathManager handler (as ``detectron2://`` is),
which refuses a weights file whose sha256 differs from model.json's with one line. The model
marked ``"default": true`` is the one ``maskrcnnpp-predict`` uses when given no config.
"""
import hashlib
import json
import os

import torch
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from ..errors import UserError
from ..utils.json_io import atomic_write, write_json_atomic

__all__ = ["PREFIX", "ROOT", "config_path", "default_model", "export_model", "list_models", "model_info",
           "weights_path"]

PREFIX = "maskrcnnpp://"
ROOT = os.path.dirname(os.path.abspath(__file__))
MAX_FILE_BYTES = 32 * 2 ** 20
_verified = {}  # (path, size, mtime) -> sha256 already checked in this process


def list_models():
    """The names of the zoo's models (folders holding a model.json), sorted."""
    return sorted(n for n in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, n, "model.json")))


def model_info(name):
    """model.json of ``name``; UserError naming the zoo's models when there is no such model."""
    path = os.path.join(ROOT, name, "model.json")
    if os.sep in name or not os.path.isfile(path):
        known = ", ".join(list_models()) or "none yet"
        raise UserError(f"{PREFIX}{name}: no such model in the model zoo (its models: {known})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def config_path(name):
    """The config file ``name`` was trained with."""
    model_info(name)
    return os.path.join(ROOT, name, "config.yaml")


def default_model():
    """The name of the model marked default; UserError when the zoo marks none."""
    marked = [n for n in list_models() if model_info(n).get("default")]
    if len(marked) != 1:
        raise UserError("no model given and the model zoo has no default model: pass --config-file with "
                        "MODEL.WEIGHTS, or --model NAME" + (f" ({', '.join(list_models())})" if list_models() else ""))
    return marked[0]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_path(name):
    """The local weights file of ``name``, after checking its sha256 against model.json's."""
    info = model_info(name)
    path = os.path.join(ROOT, name, info["weights"])
    if not os.path.isfile(path):
        raise UserError(f"{PREFIX}{name}: its weights file {path} is missing")
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) != info["sha256"]:
        found = _sha256(path)
        if found != info["sha256"]:
            raise UserError(f"{PREFIX}{name}: {path} does not match its sha256 (model.json: {info['sha256'][:12]}..., "
                            f"file: {found[:12]}...): damaged or replaced; restore it (git checkout -- {path})")
        _verified[key] = found
    return path


class ModelZooHandler(PathHandler):
    """``maskrcnnpp://<name>`` -> the zoo model's verified local weights file."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path, **kwargs):
        return weights_path(path[len(PREFIX):])

    def _open(self, path, mode="r", **kwargs):
        return open(self._get_local_path(path), mode)


PathManager.register_handler(ModelZooHandler())


def _half(state):
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export_model(name, cfg, checkpoint, info, default=False, root=None, size_head=None):
    """Write the zoo folder of ``name``: the model weights of ``checkpoint`` (a Detectron2 .pth) in
    half precision, with the size head of ``size_head`` (maskrcnnpp-train-size-head's file) when
    given, ``cfg`` dumped as config.yaml, and model.json (``info`` plus the file name, its sha256
    and ``default``). Returns the folder. UserError when the file would exceed 32 MiB."""
    folder = os.path.join(root or ROOT, name)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content = {"model": _half(state.get("model", state))}
    if size_head:
        content["size_head"] = _half(torch.load(size_head, map_location="cpu", weights_only=True)["size_head"])
    weights = os.path.join(folder, "model_final_fp16.pth")
    os.makedirs(folder, exist_ok=True)
    with atomic_write(weights, "wb") as f:
        torch.save(content, f)
    if os.path.getsize(weights) > MAX_FILE_BYTES:
        os.unlink(weights)
        raise UserError(f"{name}: the half-precision weights take more than 32 MiB; the zoo keeps files under that")
    with atomic_write(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    record = dict(info, name=name, weights=os.path.basename(weights), sha256=_sha256(weights), default=bool(default))
    write_json_atomic(os.path.join(folder, "model.json"), record)
    return folder
