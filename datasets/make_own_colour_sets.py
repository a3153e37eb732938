#!/usr/bin/env python
"""Make the fine-tuning benchmark's "own data": colour images of dsb2018_train_fixed as a user
would hold them, a folder of images and a folder of 16-bit label images, for ``import_labels``.

    python datasets/make_own_colour_sets.py --dataset dsb2018_train_fixed --sizes 10 30 --output own
    python tools/import_labels.py --images own/colour10/images --labels own/colour10/labels \
        --name colour10 --val-fraction 0 --test-fraction 0

The images are drawn once with random.Random(seed) from the dataset's colour images (sorted by
file name first); each smaller set is the start of the larger ones, so 10 images are a part of 30.
"""
import argparse
import os
import random
import shutil
import sys

import maskrcnnpp.data  # noqa: F401  (first: applies the Detectron2 guards, registers the datasets)
from detectron2.data import DatasetCatalog
from pycocotools import mask as mask_utils

from maskrcnnpp.data.segmentation import segmentation_to_rle
from maskrcnnpp.evaluation.nuclei_metrics import masks_to_label_image
from maskrcnnpp.predict.outputs import write_label_image


def pick(records, count, seed):
    colour = sorted((r for r in records if r.get("modality") == "colour"), key=lambda r: r["file_name"])
    if count > len(colour):
        sys.exit(f"error: --sizes {count}: the dataset has only {len(colour)} colour images")
    random.Random(seed).shuffle(colour)
    return colour[:count]


def write_set(records, folder):
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
    for record in records:
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        height, width = record["height"], record["width"]
        masks = [mask_utils.decode(segmentation_to_rle(a["segmentation"], height, width)).astype(bool)
                 for a in record["annotations"]]
        shutil.copyfile(record["file_name"], os.path.join(folder, "images", stem + ".png"))
        write_label_image(masks_to_label_image(masks, (height, width)), os.path.join(folder, "labels", stem + ".png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dsb2018_train_fixed")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="writes OUTPUT/colour<N>/{images,labels}/")
    args = parser.parse_args()
    chosen = pick(DatasetCatalog.get(args.dataset), max(args.sizes), args.seed)
    for size in sorted(args.sizes):
        write_set(chosen[:size], os.path.join(args.output, f"colour{size}"))
        print(f"{args.output}/colour{size}: {size} images and label images")


if __name__ == "__main__":
    main()
