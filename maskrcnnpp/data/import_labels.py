"""Import your own nuclei: a folder of images and a folder of instance label images.

Label images hold 0 for background and 1..N for the nuclei (8/16/32-bit integer
PNG or TIFF: what StarDist, Cellpose and napari read and write). Images and
label images are paired by file stem; a label's stem may carry a suffix such as
``_masks`` (Cellpose), ``_label(s)`` or ``_mask``. Each pair is checked, the
pairs are split reproducibly (seeded, stratified by grey/colour; default
80/10/10) or by a split file, and the result is written as the DSB2018
preparation writes it::

    <output-root>/NAME/images/<stem>.png
    <output-root>/NAME/annotations/instances_<split>.json    (COCO, RLE masks)

with each image's ``modality`` (grey/colour), ``image_key`` (its stem) and
``median_diameter``. The folder is built beside its target and swapped in when
complete, so an interrupted import leaves the old one (or none). The datasets
are then registered as ``NAME_<split>`` (see datasets.py).
"""
import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field

import numpy as np
import tifffile
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from tqdm import tqdm

from ..errors import MissingFileError, UserError, error_reason, run_command
from .images import read_image_rgb8
from ..utils.json_io import replace_folder
from ..utils.temp_dirs import make_owned_temp_dir, remove_stale_temp_dirs
from .datasets import BUILTIN_FOLDERS, datasets_root
from .diameter import median_diameter
from .dsb2018_convert import grey_or_colour, mask_annotation, write_coco_instances
from .stratified_split import sizes_from_fractions, stratified_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABEL_EXTENSIONS",
    "LABEL_SUFFIXES",
    "BadPair",
    "ImportSummary",
    "check_name",
    "import_labels",
    "label_instances",
    "main",
    "pair_files",
    "read_label_image",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")
# Stripped from a label's stem (case-insensitive, longest first) to find its image.
LABEL_SUFFIXES = ("_masks", "_mask", "_labels", "_label", "-masks", "-mask", "-labels", "-label", "_seg")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
DEFAULT_SEED = 2018
MAX_LISTED = 20
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BadPair(Exception):
    """An image/label pair that cannot be used; the message is the reason."""


@dataclass
class ImportSummary:
    output_dir: str
    name: str
    images: dict = field(default_factory=dict)  # split -> number of images
    instances: dict = field(default_factory=dict)  # split -> number of nuclei
    skipped: list = field(default_factory=list)  # [(file or stem, reason)]
    removed_temps: list = field(default_factory=list)

    def format(self):
        lines = [f"Imported {self.output_dir}: {sum(self.images.values())} images, "
                 f"{sum(self.instances.values())} nuclei"]
        for split in self.images:
            lines.append(f"  {self.name}_{split}: {self.images[split]} images, {self.instances[split]} nuclei")
        lines.append(f"  skipped pairs: {len(self.skipped)}")
        shown = self.skipped[:MAX_LISTED]
        lines += [f"    {what}: {reason}" for what, reason in shown]
        if len(self.skipped) > len(shown):
            lines.append(f"    ... {len(self.skipped) - len(shown)} more")
        return "\n".join(lines)


def check_name(name):
    """A dataset name: a plain folder name, not one of the built-in DSB2018 sets."""
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit")
    if name in BUILTIN_FOLDERS:
        raise UserError(f"--name {name!r} clashes with the built-in dataset {name}; choose another name")
    return name


def _check_free(name, splits, output_dir):
    """``NAME_<split>`` must not be a dataset registered from elsewhere (e.g. Detectron2's own)."""
    registered = set(DatasetCatalog.list())
    for split in splits:
        dataset = f"{name}_{split}"
        json_file = MetadataCatalog.get(dataset).get("json_file", None) if dataset in registered else None
        if dataset in registered and (json_file is None or
                                      os.path.abspath(os.path.dirname(os.path.dirname(json_file))) != output_dir):
            raise UserError(f"--name {name!r} clashes with the registered dataset {dataset!r}; choose another name")


def _files(folder, extensions, option):
    if not os.path.isdir(folder):
        raise MissingFileError(f"{option} {folder}: no such folder")
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and n.lower().endswith(extensions))
    if not names:
        raise UserError(f"{option} {folder}: empty folder (no {', '.join(extensions)} file)")
    return names


def _label_stem(file_name):
    stem = os.path.splitext(file_name)[0]
    for suffix in sorted(LABEL_SUFFIXES, key=len, reverse=True):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _by_stem(names, stem_of, option, folder):
    by_stem = {}
    for name in names:
        stem = stem_of(name)
        if stem in by_stem:
            raise UserError(f"{option} {folder}: duplicate stem {stem!r}: {by_stem[stem]} and {name}")
        by_stem[stem] = name
    return by_stem


def pair_files(images_dir, labels_dir):
    """``({stem: (image path, label path)}, [(file, reason)] of unpaired files)``.

    Raises UserError for a missing or empty folder, or two files of one folder with the same stem.
    """
    images = _by_stem(_files(images_dir, IMAGE_EXTENSIONS, "--images"),
                      lambda n: os.path.splitext(n)[0], "--images", images_dir)
    labels = _by_stem(_files(labels_dir, LABEL_EXTENSIONS, "--labels"), _label_stem, "--labels", labels_dir)
    pairs = {s: (os.path.join(images_dir, images[s]), os.path.join(labels_dir, labels[s]))
             for s in sorted(set(images) & set(labels))}
    unpaired = [(images[s], f"image without a label image in {labels_dir}") for s in sorted(set(images) - set(labels))]
    unpaired += [(labels[s], f"label image without an image in {images_dir}") for s in sorted(set(labels) - set(images))]
    return pairs, unpaired


def read_label_image(path):
    """The label image at ``path`` as a 2-D integer array; BadPair if it is not one."""
    try:
        if path.lower().endswith((".tif", ".tiff")):
            labels = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
                    raise BadPair(f"{image.mode} label image (a label image has one channel of integers)")
                labels = np.array(image)
    except BadPair:
        raise
    except Exception as e:  # Pillow and tifffile raise many types for broken files
        raise BadPair(f"unreadable label image ({error_reason(e)})") from None
    labels = np.squeeze(labels)
    if labels.ndim != 2:
        raise BadPair(f"label image of shape {labels.shape} (a label image has one channel of integers)")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise BadPair(f"{labels.dtype} label image (labels must be integers: 0 background, 1..N nuclei)")
    if labels.size and labels.min() < 0:
        raise BadPair(f"negative labels (minimum {labels.min()}; 0 is background, 1..N nuclei)")
    return labels


def label_instances(labels):
    """``[(y0, x0, bool crop)]``, one per nonzero label value (in increasing order); a nucleus
    in several pieces stays one instance. Crops, not full-size masks, so memory stays small."""
    values, inverse = np.unique(labels, return_inverse=True)
    dense = inverse.reshape(labels.shape).astype(np.int32)  # 0..K, by increasing label value
    if values[0] != 0:  # no background pixel: dense index 0 is a nucleus
        dense += 1
    width = labels.shape[1]
    flat = dense.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat)
    ends = np.cumsum(counts)
    instances = []
    for index in range(1, len(counts)):
        pixels = order[ends[index - 1] : ends[index]]
        rows, cols = pixels // width, pixels % width
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        instances.append((int(y0), int(x0), dense[y0:y1, x0:x1] == index))
    return instances


def _convert_pair(image_path, label_path):
    """(pixels to save, modality, instances); BadPair for an unusable pair."""
    try:
        rgb = read_image_rgb8(image_path)
    except UserError as e:
        raise BadPair(str(e)) from None
    labels = read_label_image(label_path)
    if labels.shape != rgb.shape[:2]:
        raise BadPair(f"label image is {labels.shape[0]}x{labels.shape[1]}, "
                      f"its image {rgb.shape[0]}x{rgb.shape[1]}")
    pixels, modality = grey_or_colour(rgb)
    instances = label_instances(labels)
    if not instances:
        raise BadPair("no nucleus (the label image is all 0)")
    return pixels, modality, instances


def _read_split_file(path, stems):
    """{split: [stems]} from a JSON file {"train": [...], "val": [...], ...} (stems or file names)."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except FileNotFoundError:
        raise MissingFileError(f"--split-file {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--split-file {path}: cannot read JSON ({error_reason(e)})") from None
    if not isinstance(content, dict) or not content or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in content.values()
    ):
        raise UserError(f'--split-file {path}: expected {{"train": [stems], "val": [stems], ...}}')
    split, seen = {}, {}
    for name, items in content.items():
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", name):
            raise UserError(f"--split-file {path}: split name {name!r} is not a plain name")
        if not items:
            raise UserError(f"--split-file {path}: split {name!r} is empty")
        split[name] = []
        for item in items:
            stem = item if item in stems else os.path.splitext(item)[0]
            if stem in seen:
                raise UserError(f"--split-file {path}: {item!r} is in both {seen[stem]!r} and {name!r}")
            seen[stem] = name
            split[name].append(stem)
    return split


def _seeded_split(modalities, fractions, seed):
    fractions = {k: f for k, f in fractions.items() if f > 0}
    sizes = sizes_from_fractions(len(modalities), fractions)
    for k, n in sizes.items():
        if n == 0 and k == "train":
            raise UserError(f"split 'train' would be empty: {len(modalities)} usable image(s) at train fraction "
                            f"{fractions[k]:g} give it none (lower --val-fraction / --test-fraction)")
        if n == 0:
            raise UserError(f"split {k!r} would be empty: {len(modalities)} usable image(s) at --{k}-fraction "
                            f"{fractions[k]:g} give it none (import more images, raise --{k}-fraction, "
                            f"or set it to 0 to write no {k} split)")
    split, _ = stratified_split(modalities, sizes, seed)
    return split


def _check_fractions(fractions):
    for key in ("val", "test"):
        if not 0 <= fractions[key] < 1:
            raise UserError(f"--{key}-fraction {fractions[key]}: must be in [0, 1)")
    if fractions["val"] + fractions["test"] >= 1:
        raise UserError(f"--val-fraction + --test-fraction = {fractions['val'] + fractions['test']:g}: "
                        "must be below 1 (the rest is train)")


def _pairs_in_split_file(pairs, wanted, split_file, summary):
    """The pairs the split file lists; the others, and listed stems with no pair, go to skipped."""
    listed = {s for stems in wanted.values() for s in stems}
    summary.skipped += [(os.path.basename(pairs[s][0]), f"not in the split file {split_file}")
                        for s in sorted(set(pairs) - listed)]
    summary.skipped += [(s, f"in the split file, but no image/label pair {s}") for s in sorted(listed - set(pairs))]
    return {s: p for s, p in pairs.items() if s in listed}


def _convert_pairs(pairs, build, name, summary, progress):
    """Save each usable pair's image into ``build/images``; {stem: (image record, annotations)}
    (RLE, not masks, is kept until the JSON is written; annotation ids come with the split)."""
    entries = {}
    image_ids = {stem: n for n, stem in enumerate(sorted(pairs), start=1)}
    for stem, (image_path, label_path) in tqdm(pairs.items(), desc=name, unit="pair", disable=not progress,
                                                leave=False):
        try:
            pixels, modality, instances = _convert_pair(image_path, label_path)
        except BadPair as e:
            summary.skipped.append((f"{os.path.basename(image_path)} + {os.path.basename(label_path)}", str(e)))
            continue
        Image.fromarray(pixels).save(os.path.join(build, "images", stem + ".png"))
        height, width = pixels.shape[:2]
        record = {"id": image_ids[stem], "file_name": stem + ".png", "height": height, "width": width,
                  "image_key": stem, "modality": modality,
                  "median_diameter": median_diameter(int(c.sum()) for _, _, c in instances)}
        entries[stem] = (record, [mask_annotation(crop, None, image_ids[stem], (height, width), (y0, x0))
                                  for y0, x0, crop in instances])
    return entries


def _split_entries(entries, wanted, split_file, fractions, seed):
    """{split: [stems]}: the split file's (usable stems only), or a seeded stratified split."""
    if wanted is None:
        return _seeded_split({s: entries[s][0]["modality"] for s in entries}, fractions, seed)
    split = {k: [s for s in stems if s in entries] for k, stems in wanted.items()}
    for k, stems in split.items():
        if not stems:
            raise UserError(f"--split-file {split_file}: split {k!r} has no usable image "
                            "(its pairs are missing or skipped, see above)")
    return split


def _write_splits(split, entries, build, describe, summary):
    next_id = 1
    for k, stems in split.items():
        images, annotations = [], []
        for stem in sorted(stems, key=lambda s: entries[s][0]["id"]):
            record, image_annotations = entries[stem]
            images.append(record)
            for annotation in image_annotations:
                annotations.append(dict(annotation, id=next_id))
                next_id += 1
        write_coco_instances(os.path.join(build, "annotations", f"instances_{k}.json"),
                             {"description": describe(k)}, images, annotations)
        summary.images[k], summary.instances[k] = len(images), len(annotations)


def import_labels(images_dir, labels_dir, name, output_root=None, fractions=None, seed=DEFAULT_SEED,
                  split_file=None, progress=False):
    """Import the pairs of ``images_dir`` / ``labels_dir`` as ``output_root/name``; returns an
    ImportSummary. Raises UserError (nothing written) when the inputs cannot make a dataset."""
    check_name(name)
    output_root = datasets_root() if output_root is None else output_root
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    _check_fractions(fractions)
    pairs, unpaired = pair_files(images_dir, labels_dir)
    wanted = _read_split_file(split_file, set(pairs)) if split_file else None
    output_dir = os.path.abspath(os.path.join(output_root, name))
    summary = ImportSummary(output_dir, name, skipped=list(unpaired))
    if wanted is not None:
        pairs = _pairs_in_split_file(pairs, wanted, split_file, summary)

    _check_free(name, list(wanted) if wanted else [k for k, f in fractions.items() if f > 0], output_dir)
    os.makedirs(output_root, exist_ok=True)
    tmp_prefix = f".{name}.tmp-"
    summary.removed_temps, _ = remove_stale_temp_dirs(output_root, tmp_prefix)
    tmp_dir = make_owned_temp_dir(output_root, tmp_prefix)
    try:
        build = os.path.join(tmp_dir, "build")
        os.makedirs(os.path.join(build, "images"))
        os.makedirs(os.path.join(build, "annotations"))
        entries = _convert_pairs(pairs, build, name, summary, progress)
        if not entries:
            raise UserError(f"--images {images_dir} / --labels {labels_dir}: no usable image/label pair "
                            f"({len(summary.skipped)} skipped; first: {_first_reason(summary)})")
        split = _split_entries(entries, wanted, split_file, fractions, seed)
        _write_splits(split, entries, build,
                      lambda k: f"{name} ({k} split), imported from {images_dir} and {labels_dir}", summary)
        replace_folder(build, output_dir, os.path.join(tmp_dir, "old"))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return summary


def _first_reason(summary):
    what, reason = summary.skipped[0] if summary.skipped else ("", "none")
    return f"{what}: {reason}" if what else reason


def build_parser():
    parser = argparse.ArgumentParser(
        prog="maskrcnnpp-import-labels", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images (PNG, TIFF, JPEG)")
    parser.add_argument("--labels", required=True, metavar="DIR",
                        help="folder of instance label images (PNG or TIFF; 0 background, 1..N nuclei)")
    parser.add_argument("--name", required=True, help="dataset name: registered as NAME_train, NAME_val, NAME_test")
    parser.add_argument("--output-root", default=None, metavar="DIR",
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_FRACTIONS["val"], metavar="F",
                        help="share of images for NAME_val (default 0.1; 0: no val split)")
    parser.add_argument("--test-fraction", type=float, default=DEFAULT_FRACTIONS["test"], metavar="F",
                        help="share of images for NAME_test (default 0.1; 0: no test split)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    parser.add_argument("--split-file", metavar="FILE",
                        help='JSON {"train": [stems], "val": [...], "test": [...]} to use instead of a seeded split')
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run(argv):
    args = build_parser().parse_args(argv)
    fractions = {"train": 1.0 - args.val_fraction - args.test_fraction, "val": args.val_fraction,
                 "test": args.test_fraction}
    summary = import_labels(args.images, args.labels, args.name, args.output_root, fractions, args.seed,
                            args.split_file, progress=not args.no_progress)
    print(summary.format())
    print(f"Train on it with: DATASETS.TRAIN \"('{args.name}_train',)\"")
    return 0


def main(argv=None):
    return run_command(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
