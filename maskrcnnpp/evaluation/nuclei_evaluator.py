"""Detectron2 evaluator for nuclei: foreground IoU/Dice, DSB mAP and COCO AP.

Units: foreground IoU and Dice are in percent (as in the paper's table); the
DSB mAP and its per-threshold APs are fractions in [0, 1] (as on Kaggle's
leaderboard); COCO AP is in percent (Detectron2's convention).
"""
import itertools
import logging
import os
from collections import OrderedDict

import numpy as np
import torch

from ..compat import has_compiled_ops, install_guards

install_guards()  # before detectron2.evaluation, see compat.py

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator  # noqa: E402
from detectron2.structures import Boxes, BoxMode, Instances  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import create_small_table  # noqa: E402

from ..data.diameter import median_diameter_of_record  # noqa: E402
from ..data.segmentation import LazyMasks, decode_segmentation  # noqa: E402
from ..utils.json_io import write_json_atomic  # noqa: E402
from .cropped_masks import CroppedMaskStack  # noqa: E402
from .diameter_errors import diameter_errors  # noqa: E402
from .nuclei_metrics import (  # noqa: E402
    DSB_IOU_THRESHOLDS,
    dsb_average_precision,
    foreground_counts,
    iou_dice_from_counts,
    masks_to_label_image,
    resolve_overlaps,
)

__all__ = ["NucleiEvaluator", "annotated_label_image", "decode_segmentation", "ground_truth_as_instances"]

# Fields of a dataset record copied into the per-image results, for analysis
# by image size or imaging modality.
_RECORD_FIELDS = ("file_name", "height", "width", "modality")
SEM_SEG_THRESHOLD = 0.5


def annotated_label_image(record):
    """The label image of a dataset record's annotated nuclei (the first annotation wins a
    shared pixel). One annotation is decoded at a time: a dense image never holds N full masks."""
    height, width = record["height"], record["width"]
    masks = LazyMasks(record.get("annotations", []), lambda a: decode_segmentation(a["segmentation"], height, width))
    return masks_to_label_image(masks, (height, width))


def ground_truth_as_instances(record):
    """A dataset record's annotations as Detectron2 predictions with score 1.

    Fed back to the evaluator they must score perfectly; used to check it.
    """
    height, width = record["height"], record["width"]
    annotations = record.get("annotations", [])
    masks = torch.zeros((len(annotations), height, width), dtype=torch.bool)
    for i, annotation in enumerate(annotations):
        masks[i] = torch.from_numpy(decode_segmentation(annotation["segmentation"], height, width))
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    instances = Instances((height, width))
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.ones(len(annotations))
    instances.pred_classes = torch.tensor(
        [a["category_id"] for a in annotations], dtype=torch.int64
    )
    return instances


def _count_labels(labels):
    return int(np.count_nonzero(np.bincount(labels.ravel())[1:]))


class NucleiEvaluator(DatasetEvaluator):
    """Foreground IoU/Dice, DSB mAP and (optionally) COCO bbox/segm AP of nuclei.

    For outputs with ``"instances"`` (``pred_masks``, ``scores``): predictions
    with score >= ``score_threshold`` give the foreground (their union) and,
    overlaps resolved by score, the DSB mAP. For outputs with ``"sem_seg"`` (a
    foreground probability map, H x W or 1 x H x W): the map >= 0.5 gives the
    foreground; no DSB mAP. Ground truth comes from ``DatasetCatalog``.

    ``evaluate()`` returns ``{"nuclei": {...}, "segm": {...}, "bbox": {...}}``:
    ``fg_iou`` / ``fg_dice`` are means over images and ``*_pooled`` are over
    all pixels of the dataset, in percent; ``dsb_map`` and ``dsb_ap@0.50`` ...
    ``dsb_ap@0.95`` are means over images, fractions in [0, 1]. ``segm`` and
    ``bbox`` come from Detectron2's ``COCOEvaluator``.
    With ``output_dir``, ``nuclei_metrics.json`` holds the summary and one
    record per image (fg IoU/Dice in percent, DSB mAP as a fraction).
    """

    def __init__(
        self,
        dataset_name,
        output_dir=None,
        *,
        score_threshold=0.5,
        coco_ap=True,
        max_dets_per_image=None,
        distributed=True,
    ):
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._score_threshold = score_threshold
        self._distributed = distributed
        # Loading the records first also gives the metadata its category id
        # mapping, which COCOEvaluator needs.
        self._gt_records = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        self._coco = None
        if coco_ap:
            self._coco = COCOEvaluator(
                dataset_name,
                tasks=("bbox", "segm"),
                distributed=distributed,
                output_dir=output_dir,
                max_dets_per_image=max(100, max_dets_per_image or 100),
                use_fast_impl=has_compiled_ops(),  # the fast COCOeval needs them
            )
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, output_dir=None):
        return cls(
            dataset_name,
            output_dir,
            score_threshold=cfg.TEST.NUCLEI.SCORE_THRESHOLD,
            coco_ap=cfg.TEST.NUCLEI.COCO_AP,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            distributed=True,
        )

    def reset(self):
        self._records = []
        self._coco_has_input = False
        if self._coco is not None:
            self._coco.reset()

    def process(self, inputs, outputs):
        for input_, output in zip(inputs, outputs):
            if "instances" in output:
                record = self._evaluate_instances(input_["image_id"], output["instances"])
            elif "sem_seg" in output:
                record = self._evaluate_semantic(input_["image_id"], output["sem_seg"])
            else:
                continue
            if output.get("diameter") is not None:
                record.update(self._diameters(input_["image_id"], output))
            self._records.append(record)
        if self._coco is not None and any("instances" in o for o in outputs):
            self._coco.process(inputs, outputs)
            self._coco_has_input = True

    def _ground_truth(self, image_id):
        record = self._gt_records[image_id]
        labels = annotated_label_image(record)
        base = {"image_id": image_id}
        base.update({k: record[k] for k in _RECORD_FIELDS if k in record})
        return labels, base

    def _evaluate_instances(self, image_id, instances):
        instances = instances.to("cpu")
        gt_labels, record = self._ground_truth(image_id)
        if len(instances) == 0 and not instances.has("pred_masks"):
            masks = np.zeros((0,) + gt_labels.shape, dtype=bool)
        elif isinstance(instances.pred_masks, CroppedMaskStack):
            masks = instances.pred_masks
        else:
            masks = instances.pred_masks.numpy()
        scores = instances.scores.numpy()
        kept = np.flatnonzero(scores >= self._score_threshold)
        self._check_shape(masks.shape[1:] if len(masks) else gt_labels.shape, gt_labels, image_id)
        if isinstance(masks, CroppedMaskStack):
            kept_masks = [masks.crops[i] for i in kept]  # painted crop by crop
        else:
            kept_masks = LazyMasks(kept, masks.__getitem__)  # masks[kept] would copy them
        pred_labels = resolve_overlaps(kept_masks, scores[kept], gt_labels.shape)
        record.update(self._foreground_metrics(pred_labels > 0, gt_labels > 0))
        dsb_map, dsb_ap = dsb_average_precision(gt_labels, pred_labels)
        record.update(
            dsb_map=dsb_map,
            dsb_ap=dsb_ap,
            num_gt=_count_labels(gt_labels),
            num_pred=int(len(kept)),
        )
        return record

    def _evaluate_semantic(self, image_id, sem_seg):
        probability = sem_seg.detach().to("cpu").float().numpy()
        if probability.ndim == 3 and probability.shape[0] == 1:
            probability = probability[0]
        if probability.ndim != 2:
            raise ValueError(
                f"sem_seg must be a 1-channel foreground probability map, got {probability.shape}"
            )
        gt_labels, record = self._ground_truth(image_id)
        self._check_shape(probability.shape, gt_labels, image_id)
        record.update(self._foreground_metrics(probability >= SEM_SEG_THRESHOLD, gt_labels > 0))
        record.update(dsb_map=None, dsb_ap=None, num_gt=_count_labels(gt_labels))
        return record

    @staticmethod
    def _check_shape(pred_shape, gt_labels, image_id):
        if tuple(pred_shape) != gt_labels.shape:
            raise ValueError(
                f"Image {image_id}: prediction of size {tuple(pred_shape)}, "
                f"ground truth of size {gt_labels.shape}"
            )

    def _diameters(self, image_id, output):
        """The diameter the image was predicted at, how it was found, and its annotated median
        (None for an image without nuclei, whose record holds the dataset's)."""
        record = self._gt_records[image_id]
        own = {k: v for k, v in record.items() if k != "median_diameter"}
        return {"diameter": float(output["diameter"]), "diameter_source": output.get("diameter_source"),
                "annotated_diameter": median_diameter_of_record(own)}

    @staticmethod
    def _foreground_metrics(pred_fg, gt_fg):
        intersection, union, pred_area, gt_area = foreground_counts(pred_fg, gt_fg)
        iou, dice = iou_dice_from_counts(intersection, union, pred_area, gt_area)
        return {
            "fg_iou": 100.0 * iou,
            "fg_dice": 100.0 * dice,
            "fg_intersection": intersection,
            "fg_union": union,
            "fg_pred_area": pred_area,
            "fg_gt_area": gt_area,
        }

    def evaluate(self):
        records = self._records
        if self._distributed:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(records, dst=0)))
        coco_results = {}
        if self._coco is not None and self._any_rank(self._coco_has_input):
            coco_results = self._coco.evaluate()  # collective: every rank calls it
        if self._distributed and not comm.is_main_process():
            return {}

        results = OrderedDict()
        if records:
            summary = summarize(records)
            self._logger.info(
                f"Nuclei metrics on {self._dataset_name}:\n" + create_small_table(summary)
            )
            results["nuclei"] = summary
            self._write_json(summary, records)
        else:
            self._logger.warning("[NucleiEvaluator] Did not receive valid predictions.")
        results.update(coco_results)
        return results

    def _any_rank(self, flag):
        if not self._distributed:
            return flag
        return any(comm.all_gather(flag))

    def _write_json(self, summary, records):
        if not self._output_dir:
            return
        os.makedirs(self._output_dir, exist_ok=True)
        content = {
            "dataset": self._dataset_name,
            "score_threshold": self._score_threshold,
            "summary": summary,
            "images": records,
        }
        write_json_atomic(os.path.join(self._output_dir, "nuclei_metrics.json"), content)


def summarize(records):
    """Dataset summary of per-image records (units as in :class:`NucleiEvaluator`)."""
    totals = {
        k: sum(r[k] for r in records)
        for k in ("fg_intersection", "fg_union", "fg_pred_area", "fg_gt_area")
    }
    pooled_iou, pooled_dice = iou_dice_from_counts(
        totals["fg_intersection"], totals["fg_union"], totals["fg_pred_area"], totals["fg_gt_area"]
    )
    summary = OrderedDict(
        fg_iou=float(np.mean([r["fg_iou"] for r in records])),
        fg_dice=float(np.mean([r["fg_dice"] for r in records])),
        fg_iou_pooled=100.0 * pooled_iou,
        fg_dice_pooled=100.0 * pooled_dice,
    )
    instance_records = [r for r in records if r["dsb_map"] is not None]
    if instance_records:
        summary["dsb_map"] = float(np.mean([r["dsb_map"] for r in instance_records]))
        per_threshold = np.mean([r["dsb_ap"] for r in instance_records], axis=0)
        for t, ap in zip(DSB_IOU_THRESHOLDS, per_threshold):
            summary[f"dsb_ap@{t:.2f}"] = float(ap)
    summary["num_images"] = len(records)
    estimated = [r for r in records if r.get("diameter_source") not in (None, "given")
                 and r.get("annotated_diameter") is not None]
    if estimated:
        errors = diameter_errors([r["diameter"] for r in estimated], [r["annotated_diameter"] for r in estimated])
        summary["diameter_median_error"] = errors["median_error"]
        summary["diameter_off_1.5x"] = errors["off_share"]
    return summary
