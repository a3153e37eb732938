"""The best evaluation's weights kept as ``model_best.pth``, across ``--resume``, and early stopping.

Detectron2's BestCheckpointer keeps the best score only in memory, so after ``--resume`` its first
evaluation would replace ``model_best.pth`` whatever it scored. Here the best so far is also
written to ``model_best.json`` beside it and read back when training starts again; with a
patience, training ends once that many evaluations in a row have not beaten it.
"""
import json
import logging
import os

from detectron2.engine.hooks import BestCheckpointer

from ..errors import UserError
from ..utils.json_io import write_json_atomic

__all__ = ["BEST_RECORD", "BestCheckpointWithPatience", "StoppedEarly", "read_best_record"]

BEST_RECORD = "model_best.json"
logger = logging.getLogger(__name__)


class StoppedEarly(Exception):
    """Raised from a hook to end training before SOLVER.MAX_ITER; the trainer catches it."""


def read_best_record(output_dir):
    """{"metric", "value", "iteration"} of ``output_dir``'s model_best.json, or None without one."""
    path = os.path.join(output_dir, BEST_RECORD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        float(record["value"]), int(record["iteration"]), str(record["metric"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a best-checkpoint record ({e}); delete it and model_best.pth to start "
                        "the choice of the best checkpoint again") from None
    return record


class BestCheckpointWithPatience(BestCheckpointer):
    """BestCheckpointer (higher ``metric`` is better) that survives a resume; ``patience`` > 0
    raises StoppedEarly after that many evaluations without a new best."""

    def __init__(self, eval_period, checkpointer, metric, patience, output_dir):
        super().__init__(eval_period, checkpointer, metric, mode="max")
        self.eval_period, self.metric, self.patience = eval_period, metric, patience
        self.output_dir = output_dir

    def before_train(self):
        record = read_best_record(self.output_dir)
        if record is None:
            return
        if record["metric"] != self.metric:
            raise UserError(f"{os.path.join(self.output_dir, BEST_RECORD)}: the best checkpoint was chosen by "
                            f"{record['metric']}, this run asks for TEST.BEST_METRIC {self.metric}; use another "
                            "OUTPUT_DIR or the same metric")
        self.best_metric, self.best_iter = float(record["value"]), int(record["iteration"])
        logger.info(f"best checkpoint so far: {self.metric} {self.best_metric:.4f} at iteration {self.best_iter}")

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self.eval_period == 0 and next_iter < self.trainer.max_iter:
            self._require_metric()
        self._checked(super().after_step)
        if (self.patience and self.best_iter is not None and next_iter % self.eval_period == 0
                and next_iter < self.trainer.max_iter):
            evaluations_since = (self.trainer.iter - self.best_iter) // self.eval_period
            if evaluations_since >= self.patience:
                raise StoppedEarly(f"{evaluations_since} evaluations without a better {self.metric} than "
                                   f"{self.best_metric:.4f} at iteration {self.best_iter}")

    def after_train(self):
        self._checked(super().after_train)

    def _require_metric(self):
        found = self.trainer.storage.latest()
        if self.metric not in found:
            names = sorted(k for k in found if "/" in k and not k.startswith(("lr", "time")))
            raise UserError(f"TEST.BEST_METRIC {self.metric}: the evaluation gave no such result; it gave "
                            f"{', '.join(names) or 'nothing'}")

    def _checked(self, check):
        before = (self.best_iter, self.best_metric)
        check()
        if (self.best_iter, self.best_metric) != before:
            write_json_atomic(os.path.join(self.output_dir, BEST_RECORD),
                              {"metric": self.metric, "value": self.best_metric, "iteration": self.best_iter})
