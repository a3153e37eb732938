"""Register the DSB2018 nuclei datasets in Detectron2's DatasetCatalog / MetadataCatalog.

- ``dsb2018_{train,val,test}``: prepared from the original stage1_train.zip,
  under ``$DETECTRON2_DATASETS/dsb2018`` (default ``./datasets``);
- ``dsb2018_{train,val,test}_fixed``: from stage1_train_fixed.zip, under ``.../dsb2018_fixed``;
- ``dsb2018_sample``, ``dsb2018_sample_{train,val}``: 12 images shipped with the package.
"""
import collections
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..errors import MissingFileError
from .diameter import fill_missing_diameters, median_diameter

__all__ = ["register_dsb2018", "register_dsb2018_sample", "sample_dir", "DATASET_SPLITS"]

DATASET_SPLITS = ("train", "val", "test")
SAMPLE_SPLITS = ("train", "val")


def sample_dir():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin", "sample")


def _prepare_command(output_root, fixed):
    zip_name = "stage1_train_fixed.zip" if fixed else "stage1_train.zip"
    return f"maskrcnnpp-prepare-dsb2018 --source /path/to/{zip_name} --output-root {output_root}" + (
        " --fixed" if fixed else ""
    )


def _load(dataset_name, json_files, image_root, prepare_command):
    """Detectron2 dicts of one or more COCO files, with each image's ``image_key``, ``modality``
    and ``median_diameter`` (median equivalent diameter of its nuclei, see diameter.py)."""
    for path in list(json_files) + [image_root]:
        if not os.path.exists(path):
            hint = f" Prepare it with: {prepare_command}" if prepare_command else ""
            raise MissingFileError(f"Dataset '{dataset_name}' is not available: {path} does not exist.{hint}")
    records = []
    for json_file in json_files:
        dicts = load_coco_json(json_file, image_root, dataset_name)
        with open(json_file, encoding="utf-8") as f:
            coco = json.load(f)
        extra = {im["id"]: im for im in coco["images"]}
        areas = collections.defaultdict(list)  # nuclei areas by image, for the median diameter
        for a in coco["annotations"]:
            if not a.get("iscrowd", 0):
                areas[a["image_id"]].append(a.get("area", 0))
        for d in dicts:
            info = extra[d["image_id"]]
            d["image_key"] = info.get("image_key")
            d["modality"] = info.get("modality")
            d["median_diameter"] = median_diameter(areas[d["image_id"]])
        records += dicts
    fill_missing_diameters(records)  # images with no nucleus: the dataset's median
    return records


def _register(name, json_files, image_root, prepare_command=None):
    DatasetCatalog.register(name, lambda: _load(name, json_files, image_root, prepare_command))
    metadata = dict(thing_classes=["nucleus"], image_root=image_root, evaluator_type="nuclei")
    if len(json_files) == 1:
        metadata["json_file"] = json_files[0]
    else:
        # No single COCO file: COCOEvaluator then converts the dataset dicts itself.
        metadata["json_files"] = list(json_files)
    MetadataCatalog.get(name).set(**metadata)


def register_dsb2018(output_root=None):
    """Register the full datasets; ``output_root`` defaults to $DETECTRON2_DATASETS or ./datasets."""
    if output_root is None:
        output_root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    for fixed in (False, True):
        suffix = "_fixed" if fixed else ""
        root = os.path.join(output_root, "dsb2018" + suffix)
        for split in DATASET_SPLITS:
            json_file = os.path.join(root, "annotations", f"instances_{split}.json")
            _register(
                f"dsb2018_{split}{suffix}", [json_file], os.path.join(root, "images"), _prepare_command(output_root, fixed)
            )


def register_dsb2018_sample():
    root = sample_dir()
    json_files = {s: os.path.join(root, "annotations", f"instances_{s}.json") for s in SAMPLE_SPLITS}
    image_root = os.path.join(root, "images")
    for split in SAMPLE_SPLITS:
        _register(f"dsb2018_sample_{split}", [json_files[split]], image_root)
    _register("dsb2018_sample", [json_files[s] for s in SAMPLE_SPLITS], image_root)


def _register_all():
    if "dsb2018_train" in DatasetCatalog.list():  # e.g. this module reloaded
        return
    register_dsb2018()
    register_dsb2018_sample()


_register_all()
