"""Checkpoints that are never left half-written, and a resume that skips unreadable ones.

Detectron2's checkpointer writes ``model_*.pth`` and ``last_checkpoint`` in place, so a kill
during the write leaves a truncated file that ``--resume`` and ``--eval-only`` then read. Reading
a checkpoint file and loading it strictly live in ``maskrcnnpp/weights.py`` (predict uses them too).
"""
import logging
import os
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..errors import UserError
from ..utils.json_io import atomic_write
from ..weights import describe_mismatch, load_weights_strictly, read_checkpoint, weights_mismatch

__all__ = [
    "NucleiCheckpointer",
    "describe_mismatch",
    "load_weights_strictly",
    "read_checkpoint",
    "weights_mismatch",
]

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^model_(\d+|final)\.pth$")


class NucleiCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose files are written atomically, and whose resume skips an
    unreadable checkpoint for the newest readable ``model_*.pth``."""

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        with atomic_write(path, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def get_checkpoint_file(self):
        """The checkpoint ``last_checkpoint`` names if it is readable, else the newest readable
        ``model_*.pth`` (with a warning); UserError if none is readable."""
        tagged = super().get_checkpoint_file()
        candidates = [tagged] if tagged and os.path.basename(tagged) else []
        candidates += [p for p in self.model_files_newest_first() if p not in candidates]
        problems = []
        for path in candidates:
            try:
                read_checkpoint(path)
            except UserError as e:
                problems.append(str(e))
                continue
            if problems:
                logger.warning(f"{'; '.join(problems)}: resuming from {path} instead")
            return path
        raise UserError(
            f"{self.save_dir}: no readable checkpoint to resume from ({'; '.join(problems) or 'none found'}); "
            "delete the unreadable files and run with --resume again, or start without --resume"
        )

    def model_files_newest_first(self):
        """``model_final.pth``, then ``model_<iteration>.pth`` by decreasing iteration."""
        found = []
        for name in os.listdir(self.save_dir) if os.path.isdir(self.save_dir) else ():
            match = _CHECKPOINT_NAME.match(name)
            if match:
                order = float("inf") if match.group(1) == "final" else int(match.group(1))
                found.append((order, os.path.join(self.save_dir, name)))
        return [path for _, path in sorted(found, reverse=True)]

    def final_is_readable(self):
        try:
            read_checkpoint(os.path.join(self.save_dir, "model_final.pth"))
        except UserError:
            return False
        return True
