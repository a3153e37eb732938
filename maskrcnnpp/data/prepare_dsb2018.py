"""Prepare DSB2018 stage1_train for Detectron2: COCO instance JSON per split plus PNG images.

Reads the Kaggle layout (zip or folder, original or label-fixed) and writes

    <output-root>/dsb2018[_fixed]/images/<image_id>.png
    <output-root>/dsb2018[_fixed]/annotations/instances_{train,val,test}.json

with the committed split (maskrcnnpp/data/builtin/dsb2018_split.json). The
output folder is built next to its target and swapped in only when complete.
"""
import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field

from PIL import Image
from tqdm import tqdm

from ..utils.json_io import replace_folder
from ..utils.temp_dirs import make_owned_temp_dir, remove_stale_temp_dirs
from .dsb2018_convert import BadImage, convert_image, mask_annotation, write_coco_instances
from .dsb2018_split import load_split, split_names
from .kaggle_source import KaggleSource, LayoutError

__all__ = ["PrepareSummary", "prepare", "looks_fixed", "dataset_dir", "main"]

MAX_LISTED = 20  # per list (per reason in lists of reasons), in the printed summary


@dataclass
class PrepareSummary:
    output_dir: str
    fixed: bool = False
    images: dict = field(default_factory=dict)  # split -> number of images
    instances: dict = field(default_factory=dict)  # split -> number of instances
    skipped_images: list = field(default_factory=list)  # [(image id, reason)]
    skipped_masks: list = field(default_factory=list)  # [(image id, mask file, reason)]
    missing_ids: list = field(default_factory=list)  # [(image id, split)]: in the split file, not in the source
    removed_in_fixed: list = field(default_factory=list)  # ids the label-fixed set removed on purpose
    removed_temps: list = field(default_factory=list)  # temporary folders of killed runs, removed
    unknown_temps: list = field(default_factory=list)  # temporary folders whose owner cannot be checked

    def format(self):
        kind = "label-fixed" if self.fixed else "original"
        lines = [f"Prepared {self.output_dir} ({kind} labels)"]
        for name in self.images:
            lines.append(f"  {name:>5}: {self.images[name]:5,d} images, {self.instances[name]:7,d} instances")
        total_images, total_instances = sum(self.images.values()), sum(self.instances.values())
        lines.append(f"  total: {total_images:5,d} images, {total_instances:7,d} instances")
        lines.append(f"  skipped images: {len(self.skipped_images)}")
        lines += _listing([(reason, image_id) for image_id, reason in self.skipped_images])
        lines.append(f"  skipped masks: {len(self.skipped_masks)}")
        lines += _listing([(reason, f"{image_id} {mask}") for image_id, mask, reason in self.skipped_masks])
        if self.removed_in_fixed:
            lines.append(f"  removed by the label fixes (expected): {len(self.removed_in_fixed)}")
        if self.missing_ids:
            lines.append(f"  WARNING: {len(self.missing_ids)} ids of the split file are not in the source:")
            lines += _capped([f"    {image_id} ({name})" for image_id, name in self.missing_ids])
        if self.removed_temps:
            lines.append(f"  removed temporary folders of killed runs: {len(self.removed_temps)}")
            lines += _capped([f"    {name}" for name in self.removed_temps])
        if self.unknown_temps:
            lines.append(
                f"  left alone, owner unknown (remove them if no preparation is running): {len(self.unknown_temps)}"
            )
            lines += _capped([f"    {name}" for name in self.unknown_temps])
        return "\n".join(lines)


def _capped(lines, shown=MAX_LISTED):
    return lines if len(lines) <= shown else lines[:shown] + [f"    ... {len(lines) - shown} more"]


def _listing(items, shown=MAX_LISTED):
    """Lines "what: reason", at most ``shown`` per reason (e.g. a subset leaves most ids out)."""
    lines, count = [], {}
    for reason, what in items:
        count[reason] = count.get(reason, 0) + 1
        if count[reason] <= shown:
            lines.append(f"    {what}: {reason}")
    lines += [f"    ... {n - shown} more: {reason}" for reason, n in count.items() if n > shown]
    return lines


def dataset_dir(output_root, fixed):
    return os.path.join(output_root, "dsb2018_fixed" if fixed else "dsb2018")


def looks_fixed(source_path, source_ids, split):
    """Whether a source is the label-fixed set: by its name, or by lacking exactly
    ids the label fixes removed (recorded in the split file)."""
    if "fixed" in os.path.basename(os.path.normpath(source_path)).lower():
        return True
    removed = set(split.get("fixed_removed_ids", []))
    missing = {i for name in split_names(split) for i in split[name]} - set(source_ids)
    return bool(missing) and missing <= removed


def _image_png(image_id, kinds):
    if "images" not in kinds:
        raise BadImage("missing images/ folder")
    if "masks" not in kinds:
        raise BadImage("missing masks/ folder")
    pngs = kinds["images"]
    named = [p for p in pngs if p.rsplit("/", 1)[-1] == image_id + ".png"]
    if named:
        return named[0]
    if len(pngs) == 1:
        return pngs[0]
    raise BadImage("no PNG in images/" if not pngs else f"{len(pngs)} PNGs in images/, none named {image_id}.png")


def _convert_all(source, split, output_dir, summary, progress):
    """Write images into ``output_dir/images``; return the COCO dict of each split."""
    names = split_names(split)
    split_of = {i: name for name in names for i in split[name]}
    # Integer ids follow the sorted split file, so an image keeps its id in every source.
    int_id = {i: n for n, i in enumerate(sorted(split_of), start=1)}
    coco = {name: {"images": [], "annotations": []} for name in names}
    next_annotation_id = 1
    os.makedirs(os.path.join(output_dir, "images"))
    for image_id, kinds in tqdm(source.entries.items(), desc="dsb2018", unit="img", disable=not progress):
        if image_id not in split_of:
            summary.skipped_images.append((image_id, "not in the split file"))
            continue
        try:
            image_png = _image_png(image_id, kinds)
            masks = [(p.rsplit("/", 1)[-1], source.read(p)) for p in kinds["masks"]]
            converted = convert_image(source.read(image_png), masks)
        except BadImage as e:
            summary.skipped_images.append((image_id, str(e)))
            continue
        summary.skipped_masks += [(image_id, name, reason) for name, reason in converted.skipped_masks]
        Image.fromarray(converted.pixels).save(os.path.join(output_dir, "images", image_id + ".png"))
        height, width = converted.pixels.shape[:2]
        record = coco[split_of[image_id]]
        record["images"].append(
            {
                "id": int_id[image_id],
                "file_name": image_id + ".png",
                "height": height,
                "width": width,
                "image_key": image_id,
                "modality": converted.modality,
            }
        )
        for _, mask in converted.masks:
            record["annotations"].append(mask_annotation(mask, next_annotation_id, int_id[image_id]))
            next_annotation_id += 1
    found = set(source.entries)
    removed = set(split.get("fixed_removed_ids", [])) if summary.fixed else set()
    for image_id in sorted(set(split_of) - found):
        if image_id in removed:
            summary.removed_in_fixed.append(image_id)
        else:
            summary.missing_ids.append((image_id, split_of[image_id]))
    return coco


def _write_annotations(coco, output_dir, summary):
    os.makedirs(os.path.join(output_dir, "annotations"))
    for name, record in coco.items():
        record["images"].sort(key=lambda r: r["id"])
        info = {"description": f"2018 Data Science Bowl stage1_train (BBBC038v1), {name} split", "license": "CC0 1.0"}
        write_coco_instances(os.path.join(output_dir, "annotations", f"instances_{name}.json"), info,
                             record["images"], record["annotations"])
        summary.images[name] = len(record["images"])
        summary.instances[name] = len(record["annotations"])


def prepare(source, output_dir, split=None, fixed=False, progress=True):
    """Convert a Kaggle-layout source (path or KaggleSource) into ``output_dir``.

    ``split``: see ``load_split`` (None = the committed split). Raises LayoutError
    when the source is unusable or yields no image; bad images are skipped and
    listed in the returned PrepareSummary.
    """
    split = load_split(split)
    owns_source = not isinstance(source, KaggleSource)
    if owns_source:
        source = KaggleSource(source)
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    summary = PrepareSummary(output_dir=output_dir, fixed=fixed)
    tmp_prefix = f".{os.path.basename(output_dir)}.tmp-"
    summary.removed_temps, summary.unknown_temps = remove_stale_temp_dirs(parent, tmp_prefix)
    tmp_dir = make_owned_temp_dir(parent, tmp_prefix)
    try:
        build_dir = os.path.join(tmp_dir, "build")
        coco = _convert_all(source, split, build_dir, summary, progress)
        if not any(r["images"] for r in coco.values()):
            raise LayoutError(f"{source.path}: no usable image (see the skipped list)\n" + summary.format())
        _write_annotations(coco, build_dir, summary)
        replace_folder(build_dir, output_dir, os.path.join(tmp_dir, "old"))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if owns_source:
            source.close()
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="maskrcnnpp-prepare-dsb2018", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", required=True, help="stage1_train.zip / stage1_train_fixed.zip, or its unzipped folder")
    parser.add_argument(
        "--output-root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument(
        "--fixed",
        action="store_true",
        help="the source has the community label fixes: write dsb2018_fixed/ (auto-detected from the "
        "file name or from the ids it lacks)",
    )
    parser.add_argument("--split", help="split JSON to use instead of the committed one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        split = load_split(args.split)
        with KaggleSource(args.source) as source:
            fixed = args.fixed or looks_fixed(args.source, source.entries, split)
            summary = prepare(source, dataset_dir(args.output_root, fixed), split, fixed, not args.no_progress)
    except (LayoutError, OSError, ValueError) as e:
        print(f"maskrcnnpp-prepare-dsb2018: error: {e}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
