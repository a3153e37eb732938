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

from ..config import is_finite_number
from ..errors import MissingFileError, UserError
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
# Folders Detectron2's own built-in datasets read under $DETECTRON2_DATASETS (coco_2017_train, ...).
DETECTRON2_FOLDERS = ("coco", "lvis", "cityscapes", "VOC2007", "VOC2012", "ADEChallengeData2016")
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
        coco = read_coco_instances(json_file, image_root)
        dicts = load_coco_json(json_file, image_root, dataset_name)
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


def read_coco_instances(json_file, image_root):
    """The COCO instances file ``json_file``, every image and annotation checked: UserError naming
    the file, the image and the field that is missing or damaged, or the image file that is
    gone, so that training does not find it in a DataLoader worker."""
    try:
        with open(json_file, encoding="utf-8") as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{json_file}: damaged annotation file, not valid JSON ({_json_reason(e)}); "
                        "was its writing interrupted? Prepare or import the dataset again") from None
    if not (isinstance(coco, dict) and isinstance(coco.get("images"), list)
            and isinstance(coco.get("annotations"), list)):
        raise UserError(f"{json_file}: not a COCO instances file (it needs 'images' and 'annotations' lists)")
    images = {}
    for image in coco["images"]:
        name = image.get("file_name", image.get("id")) if isinstance(image, dict) else image
        for field in ("id", "file_name", "height", "width"):
            if not isinstance(image, dict) or field not in image:
                raise UserError(f"{json_file}: image {name!r} has no '{field}'")
        path = os.path.join(image_root, image["file_name"])
        if not os.path.isfile(path):
            raise MissingFileError(f"{json_file}: image {image['file_name']} is missing: {path} does not exist")
        images[image["id"]] = image
    for annotation in coco["annotations"]:
        _check_annotation(json_file, annotation, images)
    return coco


def _json_reason(error):
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    return str(error)


def _check_annotation(json_file, annotation, images):
    if not isinstance(annotation, dict):
        raise UserError(f"{json_file}: an annotation is a {type(annotation).__name__}, not a mapping")
    image = images.get(annotation.get("image_id"))
    if image is None:
        raise UserError(f"{json_file}: annotation {annotation.get('id')!r} names image_id "
                        f"{annotation.get('image_id')!r}, which the file does not list")
    where = f"{json_file}: annotation {annotation.get('id')!r} of image {image['file_name']}"
    for field in ("bbox", "segmentation", "category_id"):
        if field not in annotation:
            raise UserError(f"{where} has no '{field}'")
    box = annotation["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(map(is_finite_number, box)) and min(box[2:]) >= 0):
        raise UserError(f"{where}: 'bbox' must be [x, y, width, height], not {box!r}")
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, dict):  # RLE
        if "counts" not in segmentation or list(segmentation.get("size", ())) != [image["height"], image["width"]]:
            raise UserError(f"{where}: 'segmentation' must be an RLE with 'counts' and 'size' "
                            f"[{image['height']}, {image['width']}] (the image's)")
    elif isinstance(segmentation, list):  # polygons
        if not segmentation or not all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(map(is_finite_number, p)) for p in segmentation
        ):
            raise UserError(f"{where}: 'segmentation' polygons must each list at least 3 x, y points")
    else:
        raise UserError(f"{where}: 'segmentation' must be an RLE or a list of polygons, not {segmentation!r:.60}")


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
    other than the built-in DSB2018 folders and those of Detectron2's built-in datasets. Cheap: folders are listed, no JSON is read. Safe to
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
        if entry in BUILTIN_FOLDERS or entry in DETECTRON2_FOLDERS or entry.startswith("."):
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
