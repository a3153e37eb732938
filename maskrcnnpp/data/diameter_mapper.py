"""The dataset mapper of INPUT.SCALE_POLICY "diameter": like Detectron2's DatasetMapper, but
the augmentations also see the image's median nucleus diameter (DiameterAugInput), so
that RescaleCropToDiameter can bring its nuclei to INPUT.NUCLEUS_DIAMETER pixels.

Boxes are recomputed from the masks after the transforms, as the random crop may cut
nuclei; nuclei cut away entirely are dropped.
"""
import copy

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .augmentation import DiameterAugInput, build_nuclei_augmentation
from .diameter import median_diameter_of_record

__all__ = ["DiameterDatasetMapper"]


class DiameterDatasetMapper:
    def __init__(self, cfg, is_train=True, augmentations=None):
        if augmentations is None:
            augmentations = build_nuclei_augmentation(cfg, is_train)
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = cfg.INPUT.FORMAT
        self.mask_on = cfg.MODEL.MASK_ON
        self.mask_format = cfg.INPUT.MASK_FORMAT
        self.is_train = is_train

    def __call__(self, dataset_dict):
        record = copy.deepcopy(dataset_dict)
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        aug_input = DiameterAugInput(image, median_diameter=median_diameter_of_record(record))
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        shape = image.shape[:2]
        record["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            record.pop("annotations", None)
            return record
        annotations = []
        for annotation in record.pop("annotations", []):
            if annotation.get("iscrowd", 0):
                continue
            if not self.mask_on:
                annotation.pop("segmentation", None)
            annotations.append(utils.transform_instance_annotations(annotation, transforms, shape))
        instances = utils.annotations_to_instances(annotations, shape, mask_format=self.mask_format)
        if instances.has("gt_masks"):
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        record["instances"] = utils.filter_empty_instances(instances)
        return record
