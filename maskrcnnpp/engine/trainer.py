"""DefaultTrainer with the nuclei data pipeline, evaluator and optimizer choice."""
import os

from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from ..compat import has_compiled_ops
from ..data.augmentation import build_nuclei_augmentation
from ..data.semantic_mapper import SemanticNucleiMapper
from .optimizer import build_optimizer


def is_semantic(cfg) -> bool:
    """Semantic models read foreground masks, not instances."""
    return cfg.MODEL.META_ARCHITECTURE == "SemanticUNetPlusPlus"


class Trainer(DefaultTrainer):
    @classmethod
    def build_train_loader(cls, cfg):
        if is_semantic(cfg):
            mapper = SemanticNucleiMapper(cfg, True)
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
        )
