"""Scale by nucleus size (issue 13): config checks, per-image diameters and the training rescale."""
import os

import numpy as np
import pytest
from detectron2.config import get_cfg

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.config import check_scale_config
from maskrcnnpp.data.augmentation import DiameterAugInput, RescaleCropToDiameter, build_nuclei_augmentation
from maskrcnnpp.data.diameter import equivalent_diameter, fill_missing_diameters, median_diameter
from maskrcnnpp.data.diameter_mapper import DiameterDatasetMapper
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import ConfigError
from maskrcnnpp.data.synthetic import disks, full_masks, make_dataset


def scale_cfg(**input_keys):
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.INPUT.SCALE_POLICY = "diameter"
    for key, value in input_keys.items():
        cfg.INPUT[key] = value
    return cfg


def disks_image(diameters, size=(200, 240), seed=0):
    """A grey image with one disk per diameter, whole inside the border, none overlapping."""
    image, placed = disks(size, diameters, seed, gap=0, margin=1, tries=1000)
    assert len(placed) == len(diameters)
    return image, full_masks(size, placed)


def mask_median_diameter(masks):
    return median_diameter([int(m.sum()) for m in masks])


def test_default_policy_is_image_size_and_defaults_pass_the_checks():
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    assert cfg.INPUT.SCALE_POLICY == "image_size"
    check_scale_config(cfg)
    assert type(build_nuclei_augmentation(cfg, True)[0]).__name__ == "ResizeShortestEdge"


def test_tile_smaller_than_overlap_names_both_keys():
    cfg = scale_cfg()
    cfg.TEST.TILE_SIZE, cfg.TEST.TILE_OVERLAP = 64, 96
    with pytest.raises(ConfigError, match=r"TEST\.TILE_SIZE.*TEST\.TILE_OVERLAP"):
        check_scale_config(cfg)


@pytest.mark.parametrize(
    "key,value", [("NUCLEUS_DIAMETER", 0.0), ("NUCLEUS_DIAMETER", -3.0), ("SCALE_POLICY", "nuclei")]
)
def test_bad_input_values_name_their_key(key, value):
    cfg = scale_cfg(**{key: value})
    with pytest.raises(ConfigError, match=f"INPUT.{key}"):
        check_scale_config(cfg)


@pytest.mark.parametrize("key,value,message", [
    ("SIZE_HEAD_CHECK", -0.1, "a fraction >= 0"), ("SIZE_HEAD_CHECK", float("nan"), "a fraction >= 0"),
    ("PROPOSALS_PER_NUCLEUS", -1.0, "a number >= 0"), ("PROPOSALS_PER_NUCLEUS", float("inf"), "a number >= 0"),
])
def test_a_negative_or_non_finite_test_number_names_its_key(key, value, message):
    cfg = scale_cfg()
    cfg.TEST[key] = value
    with pytest.raises(ConfigError, match=rf"TEST\.{key} must be {message}"):
        check_scale_config(cfg)


def test_equivalent_diameter_of_a_disk():
    assert equivalent_diameter(np.pi * 10**2) == pytest.approx(20.0)
    assert median_diameter([]) is None


def test_image_without_nuclei_takes_the_dataset_median():
    records = [{"median_diameter": d} for d in (10.0, 20.0, 40.0)] + [{"annotations": [], "height": 8, "width": 8}]
    assert fill_missing_diameters(records) == 20.0
    assert records[3]["median_diameter"] == 20.0
    assert [r["median_diameter"] for r in records[:3]] == [10.0, 20.0, 40.0]


def test_registered_sample_has_each_images_median_diameter():
    import json

    from detectron2.data import DatasetCatalog, MetadataCatalog

    records = DatasetCatalog.get("dsb2018_sample_train")
    with open(MetadataCatalog.get("dsb2018_sample_train").json_file) as f:
        coco = json.load(f)
    first = records[0]
    areas = [a["area"] for a in coco["annotations"] if a["image_id"] == first["image_id"]]
    assert first["median_diameter"] == pytest.approx(float(np.median(np.sqrt(4 * np.array(areas) / np.pi))))
    assert all(r["median_diameter"] > 0 for r in records)


@pytest.mark.parametrize("target", [8.0, 17.0, 30.0])
def test_rescale_puts_the_median_diameter_at_the_target(target):
    image, masks = disks_image([10, 11, 12, 12, 13, 14, 16])
    known = mask_median_diameter(masks)
    aug = RescaleCropToDiameter(target, jitter=(1.0, 1.0), crop_size=2000)  # crop larger than the image
    transform = aug(DiameterAugInput(image.copy(), median_diameter=known))
    rescaled = [transform.apply_segmentation(m.astype(np.uint8)).astype(bool) for m in masks]
    assert mask_median_diameter(rescaled) == pytest.approx(target, rel=0.05)


def test_jitter_stays_in_its_range_and_crops_have_the_crop_size():
    image, _ = disks_image([12] * 5, size=(300, 400))
    aug = RescaleCropToDiameter(17.0, jitter=(0.8, 1.25), crop_size=96)
    np.random.seed(0)
    scales = [aug.scale_for(12.0) for _ in range(500)]
    base = 17.0 / 12.0
    assert min(scales) >= 0.8 * base - 1e-9 and max(scales) <= 1.25 * base + 1e-9
    assert min(scales) < 0.85 * base and max(scales) > 1.2 * base  # the whole range is used
    for _ in range(20):
        aug_input = DiameterAugInput(image.copy(), median_diameter=12.0)
        aug(aug_input)
        assert aug_input.image.shape[:2] == (96, 96)


def test_small_image_is_taken_whole():
    image, _ = disks_image([12], size=(40, 50))
    aug_input = DiameterAugInput(image, median_diameter=12.0)
    RescaleCropToDiameter(12.0, crop_size=256)(aug_input)
    assert aug_input.image.shape[:2] == (40, 50)


def test_mapper_brings_a_dataset_image_to_the_target(tmp_path):
    records = make_dataset(str(tmp_path), num_images=1, size=(160, 200), seed=3)
    record = records[0]  # no median_diameter: the mapper measures its annotations
    known = median_diameter(
        [int(ellipse.sum()) for ellipse in _decoded_masks(record)]
    )
    target = 2.0 * known
    cfg = scale_cfg(NUCLEUS_DIAMETER=target, DIAMETER_JITTER=(1.0, 1.0), DIAMETER_CROP_SIZE=4096)
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.MODEL.MASK_ON = True
    out = DiameterDatasetMapper(cfg, is_train=True)(record)
    assert tuple(out["image"].shape[1:]) == (320, 400)
    instances = out["instances"]
    assert len(instances) == len(record["annotations"])
    areas = instances.gt_masks.tensor.sum(dim=(1, 2)).numpy()
    assert median_diameter(areas) == pytest.approx(target, rel=0.05)
    boxes = instances.gt_boxes.tensor
    assert float(boxes[:, 2].max()) <= 400 and float(boxes[:, 3].max()) <= 320


def test_detectron2_mapper_under_the_diameter_policy_names_the_mapper_to_use(tmp_path):
    from detectron2.data import DatasetMapper

    record = make_dataset(str(tmp_path), num_images=1, size=(64, 64), seed=1)[0]
    cfg = scale_cfg()
    cfg.INPUT.MASK_FORMAT = "bitmask"
    mapper = DatasetMapper(cfg, True, augmentations=build_nuclei_augmentation(cfg, True))
    with pytest.raises(ConfigError) as e:
        mapper(record)
    assert "DiameterDatasetMapper" in str(e.value) and "INPUT.SCALE_POLICY" in str(e.value)


def _decoded_masks(record):
    import pycocotools.mask as mask_util

    return [mask_util.decode(a["segmentation"]).astype(bool) for a in record["annotations"]]


@pytest.mark.parametrize("name", ["mask_rcnn_R_18_FPN_cpu", "mask_rcnn_R_18_NestedFPN_cpu", "mask_rcnn_R_50_FPN",
                                  "mask_rcnn_R_50_NestedFPN", "mask_rcnn_R_101_FPN", "mask_rcnn_R_101_NestedFPN",
                                  "demo_R_18_NestedFPN_cpu"])
def test_instance_configs_scale_by_nucleus_diameter_and_keep_image_size_as_a_choice(repo_root, name):

    path = os.path.join(repo_root, "configs", "nuclei", f"{name}.yaml")
    cfg = load_cfg(path)
    check_scale_config(cfg)
    assert cfg.INPUT.SCALE_POLICY == "diameter" and cfg.INPUT.NUCLEUS_DIAMETER == 17.0
    assert cfg.INPUT.DIAMETER_CROP_SIZE == (256 if "cpu" in name else 512)
    old = load_cfg(path, ["INPUT.SCALE_POLICY", "image_size"])
    assert old.INPUT.MIN_SIZE_TRAIN == ((256,) if "cpu" in name else (448, 512, 576, 640))


def test_scale_keys_are_checked_when_the_config_is_loaded_before_any_data(repo_root):
    path = os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml")
    with pytest.raises(ConfigError, match=r"TEST\.TILE_SIZE \(80\).*TEST\.TILE_OVERLAP \(80\)"):
        load_cfg(path, ["TEST.TILE_SIZE", "80", "TEST.TILE_OVERLAP", "80"])
    with pytest.raises(ConfigError, match=r"INPUT\.DIAMETER_JITTER"):
        load_cfg(path, ["INPUT.DIAMETER_JITTER", "(2.0, 1.0)"])
