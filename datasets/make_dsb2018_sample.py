#!/usr/bin/env python
"""Build the small DSB2018 sample shipped in ``maskrcnnpp/data/builtin/sample`` (run once;
its output is committed).

    python datasets/make_dsb2018_sample.py --source stage1_train.zip

Picks, with a fixed seed, images of the committed TRAIN split by kind
(modality, HxW), prepares them with the same code as the full dataset, and
writes the sample's README.md listing what it holds.
"""
import argparse
import os
import random
import sys

# A one-off developer script: it uses the installed package (install.sh installs it editable).
from maskrcnnpp.data.dsb2018_convert import decode_png, to_saved_image
from maskrcnnpp.data.dsb2018_split import load_split
from maskrcnnpp.data.kaggle_source import KaggleSource
from maskrcnnpp.data.prepare_dsb2018 import prepare
from maskrcnnpp.utils.json_io import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (modality, height, width, how many) for each sample split.
SAMPLE_KINDS = {
    "train": [
        ("grey", 256, 256, 2),
        ("grey", 256, 320, 1),
        ("grey", 360, 360, 1),
        ("grey", 520, 696, 1),
        ("colour", 256, 320, 3),
    ],
    "val": [
        ("grey", 256, 256, 1),
        ("grey", 520, 696, 1),
        ("colour", 256, 320, 2),
    ],
}
SEED = 2018


def _kind(source, image_id):
    pngs = source.entries[image_id].get("images", [])
    pixels, modality = to_saved_image(decode_png(source.read(pngs[0]), "image"))
    return modality, pixels.shape[0], pixels.shape[1]


def pick_sample_ids(source, train_ids, seed=SEED):
    """Sample split ``{name: [ids]}`` drawn from ``train_ids`` according to SAMPLE_KINDS."""
    by_kind = {}
    for image_id in sorted(set(train_ids) & set(source.entries)):
        by_kind.setdefault(_kind(source, image_id), []).append(image_id)
    rng = random.Random(seed)
    for ids in by_kind.values():
        rng.shuffle(ids)
    picked = {}
    for name, wishes in SAMPLE_KINDS.items():
        picked[name] = []
        for modality, height, width, count in wishes:
            ids = by_kind.get((modality, height, width), [])
            if len(ids) < count:
                raise ValueError(f"not enough {modality} {height}x{width} training images for the sample")
            picked[name] += [ids.pop() for _ in range(count)]
    return picked


def _readme(sample_split, kinds, sizes):
    rows = "\n".join(
        f"| {name} | `{image_id}` | {kinds[image_id][0]} | {kinds[image_id][1]}x{kinds[image_id][2]} | {sizes[image_id]:.0f} |"
        for name, ids in sample_split.items()
        for image_id in ids
    )
    return f"""# DSB2018 sample (12 images)

A few images of the 2018 Data Science Bowl stage1_train set (BBBC038v1), for
tests and quick demos: registered as `dsb2018_sample`, `dsb2018_sample_train`
and `dsb2018_sample_val`. All of them come from the TRAIN split of
`maskrcnnpp/data/builtin/dsb2018_split.json`, so they never leak into val/test.
"grey" images are fluorescence (saved as 1-channel PNG); "colour" ones are
stained tissue (H&E-like; in stage1_train every colour image is 256x320).

Data: CC0 1.0 (public domain), from the Broad Bioimage Benchmark Collection,
BBBC038v1. Please cite Caicedo et al., "Nucleus segmentation across imaging
experiments: the 2018 Data Science Bowl", Nature Methods 16, 1247–1253 (2019).

Regenerate (same ids, same files) with:

    python datasets/make_dsb2018_sample.py --source /path/to/stage1_train.zip

| sample split | Kaggle image id | modality | HxW | PNG KiB |
| --- | --- | --- | --- | --- |
{rows}
"""


def make_sample(source_path, output_dir, seed=SEED, progress=True):
    train_ids = load_split()["train"]
    with KaggleSource(source_path) as source:
        sample_split = pick_sample_ids(source, train_ids, seed)
        kinds = {i: _kind(source, i) for ids in sample_split.values() for i in ids}
        summary = prepare(source, output_dir, sample_split, progress=progress)
    # Every other image of the source is "not in the split file" here, by design.
    summary.skipped_images = [(i, r) for i, r in summary.skipped_images if r != "not in the split file"]
    sizes = {i: os.path.getsize(os.path.join(output_dir, "images", i + ".png")) / 1024 for i in kinds}
    with atomic_write(os.path.join(output_dir, "README.md"), encoding="utf-8") as f:
        f.write(_readme(sample_split, kinds, sizes))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the original stage1_train.zip, or its unzipped folder")
    parser.add_argument("--output", default=os.path.join(REPO, "maskrcnnpp", "data", "builtin", "sample"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    print(make_sample(args.source, args.output, args.seed).format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
