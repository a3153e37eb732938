"""A small synthetic dataset in COCO's own layout, so any COCO config runs without COCO.

Under ``<root>/coco/`` it writes what Detectron2's built-in ``coco_2017_{train,val}``,
``coco_2017_{train,val}_panoptic_separated`` and ``keypoints_coco_2017_{train,val}`` read (with
``DETECTRON2_DATASETS=<root>``):

    train2017/, val2017/                    JPEG images (000000000001.jpg, ...)
    annotations/instances_{split}2017.json  objects of COCO's 80 thing categories, polygons
    annotations/person_keypoints_{split}2017.json  the people, with COCO's 17 keypoints each
    annotations/panoptic_{split}2017.json   panoptic segments (things and stuff)
    panoptic_{split}2017/                   panoptic PNGs (segment id = R + 256 G + 256^2 B)
    panoptic_stuff_{split}2017/             semantic PNGs of the "separated" format: 0 for
                                            things, 1..53 for stuff, 255 ignored

Each image is a scene of two stuff regions (a wall above a floor) and a few things (ellipses and
rectangles labelled person, car or dog), drawn from a seed. It is for smoke tests of models and
configs, not for accuracy. The folder holds a ``SYNTHETIC`` marker: an existing ``coco/`` without
it (a real COCO) is never replaced.
"""
import json
import os
import shutil

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_coco_panoptic_separated
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from PIL import Image

from ..errors import UserError
from ..utils.json_io import replace_folder
from ..utils.temp_dirs import make_owned_temp_dir, remove_stale_temp_dirs

__all__ = ["MARKER", "SPLITS", "register_synthetic_coco", "write_synthetic_coco"]

MARKER = "SYNTHETIC"
SPLITS = ("train", "val")
THINGS = {"person": 1, "car": 3, "dog": 18}
STUFF = {"wall-other-merged": 199, "floor-other-merged": 190}  # above / below the horizon


def write_synthetic_coco(root, images=(8, 4), size=(256, 320), seed=0):
    """Write ``<root>/coco`` (see the module docstring) with ``images`` = (train, val) counts of
    ``size`` = (height, width) images; replaces an earlier synthetic ``coco/`` in one rename.
    Returns the folder written. UserError when ``<root>/coco`` exists and is not synthetic."""
    target = os.path.join(root, "coco")
    if os.path.exists(target) and not os.path.isfile(os.path.join(target, MARKER)):
        raise UserError(f"{target} exists and is not a synthetic dataset (no {MARKER} file in it); "
                        "choose another --output-root, the synthetic set never replaces a real COCO")
    os.makedirs(root, exist_ok=True)
    remove_stale_temp_dirs(root, ".coco-")  # left by a writer that was killed
    staging = make_owned_temp_dir(root, ".coco-")
    try:
        rng = np.random.default_rng(seed)
        first_id = 1
        for split, count in zip(SPLITS, images):
            _write_split(staging, split, range(first_id, first_id + count), size, rng)
            first_id += count
        with open(os.path.join(staging, MARKER), "w") as f:
            f.write(f"synthetic COCO-layout data written by maskrcnnpp (seed {seed}); not COCO\n")
        parking = staging + ".old"
        replace_folder(staging, target, parking)
        shutil.rmtree(parking, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def register_synthetic_coco(root, prefix="synthetic_coco"):
    """Register ``<prefix>_{train,val}`` (instances), ``<prefix>_{train,val}_separated`` (panoptic, the
    "separated" format) and ``<prefix>_{train,val}_keypoints`` (people with 17 keypoints)
    over ``<root>/coco`` with COCO's metadata, for Python code that cannot set DETECTRON2_DATASETS
    before Detectron2 registers its own names. Returns the names (registered once)."""
    folder = os.path.join(root, "coco")
    names = []
    for split in SPLITS:
        images = os.path.join(folder, f"{split}2017")
        instances = os.path.join(folder, "annotations", f"instances_{split}2017.json")
        name = f"{prefix}_{split}"
        if name not in DatasetCatalog.list():
            things = MetadataCatalog.get("coco_2017_train")
            register_coco_instances(name, {"thing_classes": things.thing_classes,
                                           "thing_dataset_id_to_contiguous_id": things.thing_dataset_id_to_contiguous_id},
                                    instances, images)
            panoptic = MetadataCatalog.get("coco_2017_train_panoptic_separated")
            keys = ("thing_classes", "thing_dataset_id_to_contiguous_id", "stuff_classes",
                    "stuff_dataset_id_to_contiguous_id", "thing_colors", "stuff_colors")
            register_coco_panoptic_separated(
                name, {k: panoptic.get(k) for k in keys}, images, os.path.join(folder, f"panoptic_{split}2017"),
                os.path.join(folder, "annotations", f"panoptic_{split}2017.json"),
                os.path.join(folder, f"panoptic_stuff_{split}2017"), instances)
            person = MetadataCatalog.get("keypoints_coco_2017_train")
            keys = ("thing_classes", "keypoint_names", "keypoint_flip_map", "keypoint_connection_rules")
            register_coco_instances(f"{name}_keypoints", {k: person.get(k) for k in keys},
                                    os.path.join(folder, "annotations", f"person_keypoints_{split}2017.json"), images)
        names += [name, f"{name}_separated", f"{name}_keypoints"]
    return names


def _scene(rng, size):
    """(image, [(category name, bool mask)] of things in drawing order, horizon row)."""
    height, width = size
    horizon = int(rng.integers(height // 3, 2 * height // 3))
    image = np.empty((height, width, 3), np.uint8)
    image[:horizon] = rng.integers(150, 200, 3)
    image[horizon:] = rng.integers(60, 110, 3)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    things, taken = [], np.zeros(size, bool)
    for _ in range(int(rng.integers(2, 5))):
        name = str(rng.choice(list(THINGS)))
        cy, cx = rng.integers(height // 8, height - height // 8), rng.integers(width // 8, width - width // 8)
        ry, rx = rng.integers(height // 16, height // 5), rng.integers(width // 16, width // 5)
        if name == "car":
            mask = (abs(yy - cy) <= ry // 2) & (abs(xx - cx) <= rx)
        else:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        if (mask & taken).any():  # things never overlap, so each is one simple polygon
            continue
        taken |= mask
        image[mask] = rng.integers(0, 256, 3)
        things.append((name, mask))
    return image, things, horizon


def _polygons(mask):
    """COCO polygons ([x0, y0, x1, y1, ...] around pixel edges) of a mask's outer contours."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(c.reshape(-1, 2) + 0.5).flatten().astype(float).tolist() for c in contours if len(c) >= 3]


def _box(mask):
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _write_split(folder, split, image_ids, size, rng):
    image_dir = os.path.join(folder, f"{split}2017")
    panoptic_dir = os.path.join(folder, f"panoptic_{split}2017")
    stuff_dir = os.path.join(folder, f"panoptic_stuff_{split}2017")
    for path in (image_dir, panoptic_dir, stuff_dir, os.path.join(folder, "annotations")):
        os.makedirs(path, exist_ok=True)
    stuff_to_contiguous = MetadataCatalog.get("coco_2017_train_panoptic_separated").stuff_dataset_id_to_contiguous_id
    images, instances, panoptic = [], [], []
    for image_id in image_ids:
        image, things, horizon = _scene(rng, size)
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(image).save(os.path.join(image_dir, file_name), quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
        segment_ids = np.zeros(size, np.int64)
        stuff = np.full(size, 255, np.uint8)
        segments = []
        free = ~np.logical_or.reduce([m for _, m in things]) if things else np.ones(size, bool)
        rows = np.arange(size[0])[:, None] < horizon
        for k, (name, region) in enumerate(STUFF.items(), start=1):
            region_mask = free & (rows if k == 1 else ~rows)
            if region_mask.any():
                segment_ids[region_mask] = k
                stuff[region_mask] = stuff_to_contiguous[region]
                segments.append(_segment(k, region, region_mask))
        for k, (name, mask) in enumerate(things, start=len(STUFF) + 1):
            segment_ids[mask] = k
            stuff[mask] = 0  # the "separated" format: every thing is class 0
            segments.append(_segment(k, THINGS[name], mask))
            instances.append({"id": len(instances) + 1, "image_id": image_id, "category_id": THINGS[name],
                              "segmentation": _polygons(mask), "area": float(mask.sum()), "bbox": _box(mask),
                              "iscrowd": 0})
        png = file_name.replace(".jpg", ".png")
        rgb = np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 65536], axis=2).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(panoptic_dir, png))
        Image.fromarray(stuff).save(os.path.join(stuff_dir, png))
        panoptic.append({"image_id": image_id, "file_name": png, "segments_info": segments})
    things_meta = [c for c in COCO_CATEGORIES if c["isthing"]]
    _write_json(os.path.join(folder, "annotations", f"instances_{split}2017.json"), {
        "info": {"description": "synthetic scenes for smoke tests (maskrcnnpp), not COCO"},
        "images": images, "annotations": instances,
        "categories": [{"id": c["id"], "name": c["name"], "supercategory": "thing"} for c in things_meta],
    })
    person = MetadataCatalog.get("keypoints_coco_2017_train")
    _write_json(os.path.join(folder, "annotations", f"person_keypoints_{split}2017.json"), {
        "images": images,
        "annotations": [dict(a, **_keypoints(a["bbox"], len(person.keypoint_names))) for a in instances
                        if a["category_id"] == THINGS["person"]],
        "categories": [{"id": THINGS["person"], "name": "person", "supercategory": "person",
                        "keypoints": list(person.keypoint_names), "skeleton": []}],
    })
    _write_json(os.path.join(folder, "annotations", f"panoptic_{split}2017.json"), {
        "images": images, "annotations": panoptic,
        "categories": [{"id": c["id"], "name": c["name"], "isthing": c["isthing"], "supercategory": "any"}
                       for c in COCO_CATEGORIES],
    })


def _keypoints(box, count):
    """COCO keypoints of a person: ``count`` visible points on an ellipse inside its box, in order."""
    x, y, w, h = box
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    points = [(x + w / 2 + 0.3 * w * np.cos(a), y + h / 2 + 0.3 * h * np.sin(a)) for a in angles]
    return {"keypoints": [round(float(v), 2) for px, py in points for v in (px, py, 2)], "num_keypoints": count}


def _segment(segment_id, category_id, mask):
    return {"id": segment_id, "category_id": category_id, "iscrowd": 0, "area": int(mask.sum()), "bbox": _box(mask)}


def _write_json(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)


def main(argv=None):
    import argparse

    from ..errors import run_command

    parser = argparse.ArgumentParser(
        prog="maskrcnnpp-synthetic-coco",
        description="Write a small synthetic dataset in COCO's layout (instances and panoptic) under "
        "OUTPUT_ROOT/coco, for smoke tests of any COCO config: run the config with DETECTRON2_DATASETS="
        "OUTPUT_ROOT and it trains and evaluates on coco_2017_train / coco_2017_val (and their "
        "_panoptic_separated versions).",
    )
    parser.add_argument("--output-root", default="datasets/synthetic", metavar="DIR",
                        help="folder to write coco/ into (default: datasets/synthetic)")
    parser.add_argument("--train-images", type=int, default=8, metavar="N")
    parser.add_argument("--val-images", type=int, default=4, metavar="N")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.train_images, args.val_images) < 1 or min(args.size) < 32:
        parser.error("--train-images and --val-images must be at least 1, --size at least 32 32")
    folder = run_command(write_synthetic_coco, args.output_root, (args.train_images, args.val_images),
                         tuple(args.size), args.seed)
    print(f"{folder}: {args.train_images} train / {args.val_images} val synthetic images; run a COCO config "
          f"with DETECTRON2_DATASETS={args.output_root}")
    return 0
