"""Register the DSB2018 nuclei datasets in Detectron2's DatasetCatalog / MetadataCatalog.

- ``dsb2018_{train,val,test}``: prepared from the original stage1_train.zip,
  under ``$DETECTRON2_DATASETS/dsb2018`` (default ``./datasets``);
- ``dsb2018_{train,val,test}_fixed``: from stage1_train_fixed.zip, under ``.../dsb2018_fixed``;
- ``dsb2018_sample``, ``dsb2018_sample_{train,val}``: 12 images shipped with the package;
- ``NAME_<split>``: any other folder ``$DETECTRON2_DATASETS/NAME`` holding
  ``annotations/instances_<split>.json`` and ``images/`` (what ``maskrcnnpp-import-labels``
  writes), found by listing folders only (no JSON is read until the dataset is loaded);
  :func:`register_own_datasets` scans again, for sets imported after the package was imported;
- ``<dataset>_grey``, ``<dataset>_colour``: the images of each dataset above whose
  ``modality`` is grey or colour (e.g. ``dsb2018_train_grey``, ``NAME_test_colour``), filtered
  when loaded.
"""
import collections
import json
import logging
import os
import re

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..errors import MissingFileError
from .diameter import fill_missing_diameters, median_diameter

__all__ = [
    "BUILTIN_FOLDERS",
    "DATASET_SPLITS",
    "MODALITIES",
    "datasets_root",
    "is_registered",
    "register_dsb2018",
    "register_dsb2018_sample",
    "register_own_datasets",
    "sample_dir",
]

DATASET_SPLITS = ("train", "val", "test")
SAMPLE_SPLITS = ("train", "val")
MODALITIES = ("grey", "colour")
# Folder names of the built-in datasets: never registered (nor imported) as one's own.
BUILTIN_FOLDERS = ("dsb2018", "dsb2018_fixed", "dsb2018_sample")
SPLIT_FILE = re.compile(r"^instances_([A-Za-z0-9][A-Za-z0-9_-]*)\.json$")

logger = logging.getLogger(__name__)


def datasets_root():
    """$DETECTRON2_DATASETS, or ``datasets`` (relative to the working folder) as Detectron2 does."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


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
    _register_modality_subsets(name, json_files, image_root)


def _modality_subset(name, parent, modality):
    records = [r for r in DatasetCatalog.get(parent) if r.get("modality") == modality]
    if not records:
        logger.warning("Dataset '%s' is empty: '%s' has no %s image.", name, parent, modality)
    return records


def _register_modality_subsets(parent, json_files, image_root):
    """``<parent>_grey`` and ``<parent>_colour``: its records of that ``modality``, filtered on load.
    No ``json_file``: the COCO file holds the other images too, so COCOEvaluator converts the
    subset's dicts itself (``json_files`` names the source files, for the checks before training)."""
    for modality in MODALITIES:
        name = f"{parent}_{modality}"
        DatasetCatalog.register(name, lambda name=name, modality=modality: _modality_subset(name, parent, modality))
        MetadataCatalog.get(name).set(
            thing_classes=["nucleus"], image_root=image_root, evaluator_type="nuclei",
            json_files=list(json_files), modality=modality, parent_dataset=parent,
        )


def register_dsb2018(output_root=None):
    """Register the full datasets; ``output_root`` defaults to $DETECTRON2_DATASETS or ./datasets."""
    if output_root is None:
        output_root = datasets_root()
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


def _own_splits(folder):
    """The split names of ``folder/annotations/instances_<split>.json`` (listing only)."""
    try:
        names = os.listdir(os.path.join(folder, "annotations"))
    except OSError:  # no annotations/ folder, or not a folder at all
        return []
    return sorted(m.group(1) for m in map(SPLIT_FILE.match, names) if m)


def register_own_datasets(output_root=None):
    """Register ``NAME_<split>`` (and its modality subsets) for each folder ``output_root/NAME``
    (default: $DETECTRON2_DATASETS or ./datasets) holding ``annotations/instances_<split>.json``,
    other than the built-in DSB2018 folders. Cheap: folders are listed, no JSON is read. Safe to
    call again (names already registered for the same file are kept; a name taken by another
    dataset is left to it, with a warning). Returns the names registered by this call."""
    if output_root is None:
        output_root = datasets_root()
    try:
        entries = sorted(os.listdir(output_root))
    except OSError:
        return []
    added = []
    for entry in entries:
        folder = os.path.join(output_root, entry)
        if entry in BUILTIN_FOLDERS or entry.startswith("."):
            continue
        for split in _own_splits(folder):
            name = f"{entry}_{split}"
            json_file = os.path.join(folder, "annotations", f"instances_{split}.json")
            if name in DatasetCatalog.list():
                if MetadataCatalog.get(name).get("json_file", None) != json_file:
                    logger.warning("%s is not registered as '%s': that name is taken by another dataset.", json_file, name)
                continue
            _register(name, [json_file], os.path.join(folder, "images"))
            added.append(name)
    return added


def is_registered(name):
    """Whether ``name`` is a registered dataset, after rescanning $DETECTRON2_DATASETS when it is
    not (a set imported after the package was imported)."""
    if name not in DatasetCatalog.list():
        register_own_datasets()
    return name in DatasetCatalog.list()


def _register_all():
    if "dsb2018_train" in DatasetCatalog.list():  # e.g. this module reloaded
        return
    register_dsb2018()
    register_dsb2018_sample()
    register_own_datasets()


_register_all()
