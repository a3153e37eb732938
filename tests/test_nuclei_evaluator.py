import json
import os
import uuid

import pycocotools.mask as mask_util
import pytest
import torch

import maskrcnnpp  # noqa: F401  (guards before detectron2.evaluation)
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import Boxes, Instances

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.evaluation import NucleiEvaluator
from maskrcnnpp.data.segmentation import decode_segmentation, encode_mask
from maskrcnnpp.data.diameter import median_diameter_of_record
from maskrcnnpp.evaluation.cropped_masks import CroppedMaskStack
from maskrcnnpp.evaluation.nuclei_evaluator import ground_truth_as_instances
from maskrcnnpp.predict.predictor import CroppedMask
from square_masks import polygon_of, square

SQUARES_PER_DENSE_IMAGE = 150


def synthetic_images():
    """(height, width, segmentations): a sparse image with RLE and polygon
    nuclei, a dense one with more than 100 nuclei, and an empty one."""
    sparse = [encode_mask(square((48, 64), 4, 4, 8)), encode_mask(square((48, 64), 20, 30, 10))]
    sparse.append(polygon_of(30, 5, 12))
    dense = [
        encode_mask(square((256, 256), 16 * (i // 16) + 4, 16 * (i % 16) + 4, 6))
        for i in range(SQUARES_PER_DENSE_IMAGE)
    ]
    return [(48, 64, sparse), (256, 256, dense), (32, 32, [])]


def write_coco_json(path, images):
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "nucleus"}]}
    for image_id, (height, width, segmentations) in enumerate(images, start=1):
        coco["images"].append(
            {"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width}
        )
        for segmentation in segmentations:
            mask = decode_segmentation(segmentation, height, width)
            x, y, w, h = mask_util.toBbox(encode_mask(mask))
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "iscrowd": 0,
                }
            )
    with open(path, "w") as f:
        json.dump(coco, f)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    json_file = str(root / "annotations.json")
    write_coco_json(json_file, synthetic_images())
    name = f"nuclei_eval_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, str(root), name))
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=str(root),
        thing_classes=["nucleus"],
        evaluator_type="nuclei",
    )
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def run(evaluator, dataset, make_output):
    evaluator.reset()
    for record in DatasetCatalog.get(dataset):
        inputs = [{k: record[k] for k in ("image_id", "file_name", "height", "width")}]
        evaluator.process(inputs, [make_output(record)])
    return evaluator.evaluate()


def gt_as_predictions(record):
    return {"instances": ground_truth_as_instances(record)}


def assert_perfect_nuclei_metrics(nuclei):
    for key in ("fg_iou", "fg_dice", "fg_iou_pooled", "fg_dice_pooled"):
        assert nuclei[key] == pytest.approx(100.0), key
    for key in ["dsb_map"] + [f"dsb_ap@{t / 100:.2f}" for t in range(50, 100, 5)]:
        assert nuclei[key] == pytest.approx(1.0), key
    assert nuclei["num_images"] == 3


def test_ground_truth_as_predictions_scores_perfectly(dataset, tmp_path):
    evaluator = NucleiEvaluator(
        dataset, str(tmp_path), max_dets_per_image=200, distributed=False
    )
    results = run(evaluator, dataset, gt_as_predictions)
    assert_perfect_nuclei_metrics(results["nuclei"])
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["bbox"]["AP"] == pytest.approx(100.0)

    with open(tmp_path / "nuclei_metrics.json") as f:
        written = json.load(f)
    assert written["summary"] == pytest.approx(dict(results["nuclei"]))
    images = {r["image_id"]: r for r in written["images"]}
    assert images[2]["num_gt"] == images[2]["num_pred"] == SQUARES_PER_DENSE_IMAGE
    assert images[3]["num_gt"] == 0 and images[3]["dsb_map"] == 1.0
    assert (images[1]["height"], images[1]["width"]) == (48, 64)
    assert images[1]["file_name"].endswith("1.png")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_coco_ap_is_limited_by_default_max_detections(dataset):
    # The dense image has 150 nuclei: COCO's default 100 detections miss a third.
    evaluator = NucleiEvaluator(dataset, distributed=False)
    results = run(evaluator, dataset, gt_as_predictions)
    assert results["segm"]["AP"] < 90.0
    assert_perfect_nuclei_metrics(results["nuclei"])  # not limited


def with_low_score_extras(record):
    """Ground truth with score 1 plus a false positive and a duplicate, both at 0.3."""
    instances = ground_truth_as_instances(record)
    height, width = instances.image_size
    extra_masks = torch.zeros((2, height, width), dtype=torch.bool)
    extra_masks[0, -4:, -4:] = True  # empty in every synthetic image
    if len(instances):
        extra_masks[1] = instances.pred_masks[0]
    extras = Instances(instances.image_size)
    extras.pred_masks = extra_masks
    extras.pred_boxes = Boxes(torch.tensor([[width - 4.0, height - 4.0, width, height]] * 2))
    extras.scores = torch.full((2,), 0.3)
    extras.pred_classes = torch.zeros(2, dtype=torch.int64)
    return {"instances": Instances.cat([instances, extras])}


def test_predictions_below_the_score_threshold_are_ignored(dataset):
    evaluator = NucleiEvaluator(dataset, coco_ap=False, distributed=False)
    assert_perfect_nuclei_metrics(run(evaluator, dataset, with_low_score_extras)["nuclei"])

    evaluator = NucleiEvaluator(dataset, coco_ap=False, score_threshold=0.2, distributed=False)
    nuclei = run(evaluator, dataset, with_low_score_extras)["nuclei"]
    assert nuclei["fg_iou"] < 100.0 and nuclei["dsb_map"] < 1.0


def test_from_config_reads_the_nuclei_keys(dataset):
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.TEST.NUCLEI.SCORE_THRESHOLD = 0.2
    cfg.TEST.NUCLEI.COCO_AP = False
    cfg.TEST.DETECTIONS_PER_IMAGE = 400
    evaluator = NucleiEvaluator.from_config(cfg, dataset, None)
    assert evaluator._coco is None
    assert run(evaluator, dataset, with_low_score_extras)["nuclei"]["dsb_map"] < 1.0


def test_sem_seg_outputs_give_foreground_metrics_only(dataset, tmp_path):
    def probability_map(record):
        fg = ground_truth_as_instances(record).pred_masks.any(dim=0)
        return {"sem_seg": torch.where(fg, 0.9, 0.1)[None]}

    evaluator = NucleiEvaluator(dataset, str(tmp_path), distributed=False)
    results = run(evaluator, dataset, probability_map)
    assert set(results) == {"nuclei"}  # no COCO AP without instances
    nuclei = results["nuclei"]
    assert set(nuclei) == {"fg_iou", "fg_dice", "fg_iou_pooled", "fg_dice_pooled", "num_images"}
    assert nuclei["fg_iou"] == pytest.approx(100.0)
    assert nuclei["fg_dice_pooled"] == pytest.approx(100.0)


def gt_as_cropped_predictions(record):
    """The ground truth again, its masks kept as crops (as the diameter-scaled model gives them),
    and a diameter 10 % above the annotated one (none on the image without nuclei)."""
    instances = ground_truth_as_instances(record)
    crops = [CroppedMask.from_full(m.numpy()) for m in instances.pred_masks]
    instances.pred_masks = CroppedMaskStack(crops, instances.image_size)
    own = median_diameter_of_record({k: v for k, v in record.items() if k != "median_diameter"})
    return {"instances": instances, "diameter": 1.1 * own if own else 17.0,
            "diameter_source": "size_head" if own else "default"}


def test_crops_score_as_full_masks_and_the_diameter_error_is_summarised(dataset, tmp_path):
    full = run(NucleiEvaluator(dataset, max_dets_per_image=200, distributed=False), dataset, gt_as_predictions)
    cropped = run(NucleiEvaluator(dataset, str(tmp_path), max_dets_per_image=200, distributed=False), dataset,
                  gt_as_cropped_predictions)
    assert_perfect_nuclei_metrics(cropped["nuclei"])
    assert cropped["segm"]["AP"] == pytest.approx(full["segm"]["AP"]) == pytest.approx(100.0)
    # two images with nuclei, both 10 % over; the empty image has no annotated diameter
    assert cropped["nuclei"]["diameter_median_error"] == pytest.approx(10.0)
    assert cropped["nuclei"]["diameter_off_1.5x"] == 0.0
    assert "diameter_median_error" not in full["nuclei"]
    images = json.load(open(tmp_path / "nuclei_metrics.json"))["images"]
    assert [r["annotated_diameter"] is None for r in images] == [False, False, True]


def test_a_crop_stack_reads_as_the_full_masks_it_stands_for():
    masks = torch.zeros((3, 20, 30), dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 10:20, 25:30] = True
    masks[2, 0:1, 0:1] = True
    stack = CroppedMaskStack([CroppedMask.from_full(m.numpy()) for m in masks], (20, 30))
    assert len(stack) == 3 and stack.shape == (3, 20, 30) and stack.to("cpu") is stack
    assert all((a == b.numpy()).all() for a, b in zip(stack, masks))
    assert (stack[-1] == masks[2].numpy()).all()
    picked = stack[torch.tensor([True, False, True])]
    assert len(picked) == 2 and (picked[1] == masks[2].numpy()).all()
    assert [m.sum() for m in stack[1:]] == [50, 1] and len(stack[[0]]) == 1
