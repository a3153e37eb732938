"""DefaultTrainer with the nuclei data pipeline, evaluator and optimizer choice."""
import logging
import os

from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator

from ..compat import has_compiled_ops
from ..errors import UserError, error_reason
from ..data.augmentation import build_nuclei_augmentation
from ..data.diameter_mapper import DiameterDatasetMapper
from ..data.semantic_mapper import SemanticNucleiMapper
from .best_checkpoint import BestCheckpointWithPatience, StoppedEarly
from .checkpoint import NucleiCheckpointer, read_checkpoint, weights_mismatch
from .optimizer import build_optimizer
from .scaled_model import DiameterScaledModel

logger = logging.getLogger(__name__)


def is_semantic(cfg) -> bool:
    """Semantic models read foreground masks, not instances."""
    return cfg.MODEL.META_ARCHITECTURE == "SemanticUNetPlusPlus"


class Trainer(DefaultTrainer):
    stopped_early_at = None  # iterations done when TEST.PATIENCE ended training

    def build_hooks(self):
        # Called by DefaultTrainer.__init__ right after it made its checkpointer: swap in the
        # atomic, resume-safe one before the PeriodicCheckpointer hook takes hold of it.
        old = self.checkpointer
        self.checkpointer = NucleiCheckpointer(old.model, old.save_dir, **old.checkpointables)
        built = super().build_hooks()
        if self.cfg.TEST.BEST_METRIC and self.cfg.TEST.EVAL_PERIOD > 0:
            # After the EvalHook, whose results it reads.
            at = next(i for i, h in enumerate(built) if isinstance(h, hooks.EvalHook)) + 1
            built.insert(at, BestCheckpointWithPatience(self.cfg.TEST.EVAL_PERIOD, self.checkpointer,
                                                        self.cfg.TEST.BEST_METRIC, self.cfg.TEST.PATIENCE,
                                                        self.cfg.OUTPUT_DIR))
        return built

    def train(self):
        """DefaultTrainer.train; a run that stops early (TEST.PATIENCE) ends normally, its last weights
        saved as model_final.pth at SOLVER.MAX_ITER, so that ``--resume`` treats it as finished."""
        train_loop_log = logging.getLogger("detectron2.engine.train_loop")
        quiet = _NotAnEarlyStop()
        train_loop_log.addFilter(quiet)
        try:
            return super().train()
        except StoppedEarly as stop:
            logger.info(f"{self.cfg.OUTPUT_DIR}: training stopped early at iteration {self.iter}: {stop}")
            self.stopped_early_at = self.iter + 1
            self.iter = self.max_iter - 1  # what the checkpoint's trainer state tells a resume
            self.checkpointer.save("model_final", iteration=self.iter)
            return None
        finally:
            train_loop_log.removeFilter(quiet)

    def resume_or_load(self, resume=True):
        resuming = resume and self.checkpointer.has_checkpoint()
        if not resuming and self.cfg.MODEL.WEIGHTS:
            # Fine-tuning from weights of another model is allowed; say once what did not match.
            problem = weights_mismatch(self.checkpointer.model, read_checkpoint(self.cfg.MODEL.WEIGHTS))
            if problem:
                logger.warning(
                    f"MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS} does not match this model: {problem}. "
                    "Those parameters start from their random initialisation."
                )
        super().resume_or_load(resume=resume)
        if resuming and self.start_iter >= self.max_iter and not self.checkpointer.final_is_readable():
            # The run ended while model_final.pth was being written: write it again.
            logger.warning(f"{self.cfg.OUTPUT_DIR}: training had finished but model_final.pth is missing "
                           "or unreadable; writing it again from the last checkpoint")
            self.checkpointer.save("model_final", iteration=self.iter)

    @classmethod
    def build_train_loader(cls, cfg):
        if is_semantic(cfg):
            mapper = SemanticNucleiMapper(cfg, True)
        elif cfg.INPUT.SCALE_POLICY == "diameter":
            mapper = DiameterDatasetMapper(cfg, True)
        else:
            mapper = DatasetMapper(cfg, True, augmentations=build_nuclei_augmentation(cfg, True))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_semantic(cfg):
            mapper = SemanticNucleiMapper(cfg, False)
        else:
            mapper = DatasetMapper(cfg, False, augmentations=build_nuclei_augmentation(cfg, False))
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Under INPUT.SCALE_POLICY diameter, evaluate as tools/predict.py predicts (scaled, tiled)."""
        if cfg.INPUT.SCALE_POLICY == "diameter" and not is_semantic(cfg):
            model = DiameterScaledModel(cfg, model)
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        if evaluator_type == "nuclei":
            from ..evaluation import NucleiEvaluator

            return NucleiEvaluator.from_config(cfg, dataset_name, output_folder)
        return COCOEvaluator(
            dataset_name,
            output_dir=output_folder,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            use_fast_impl=has_compiled_ops(),
            kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS,
        )


class _NotAnEarlyStop(logging.Filter):
    """Drops the train loop's "Exception during training" traceback for an early stop, and for a
    UserError (which the command reports in one line)."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], (StoppedEarly, UserError)))


def train_or_explain(trainer, output_dir, *train_args, hint="lower SOLVER.BASE_LR, lengthen SOLVER.WARMUP_ITERS"):
    """``trainer.train(*train_args)``; a run whose loss or boxes became inf/NaN (Detectron2's
    FloatingPointError) ends with one line naming the folder and the iteration, not a traceback."""
    try:
        return trainer.train(*train_args)
    except FloatingPointError as e:
        raise UserError(f"{output_dir}: training diverged at iteration {trainer.iter} ({error_reason(e)}); "
                        f"{hint} or start from trained weights") from None
