"""Test helper: the embedded DSB2018 sample written out as image + instance label image pairs."""
import json
import os
import shutil

import numpy as np
import tifffile
from PIL import Image

from maskrcnnpp.data import sample_dir
from maskrcnnpp.data.segmentation import decode_segmentation


def sample_coco():
    """{image_key: (image record, [annotations])} of the embedded sample (train + val)."""
    out = {}
    for split in ("train", "val"):
        with open(os.path.join(sample_dir(), "annotations", f"instances_{split}.json"), encoding="utf-8") as f:
            coco = json.load(f)
        for image in coco["images"]:
            out[image["image_key"]] = (image, [a for a in coco["annotations"] if a["image_id"] == image["id"]])
    return out


def label_image(image, annotations, dtype=np.uint16):
    """Annotation n (1-based, in file order) painted as label n; later ones win where they overlap."""
    labels = np.zeros((image["height"], image["width"]), dtype)
    for n, annotation in enumerate(annotations, start=1):
        labels[decode_segmentation(annotation["segmentation"])] = n
    return labels


def write_sample_pairs(folder):
    """``folder/images/<key>.png`` and ``folder/labels/``: 16-bit PNGs named ``<key>_masks.png``
    (Cellpose) for half the images, int32 TIFFs named ``<key>_label.tif`` (StarDist) for the rest."""
    images, labels = os.path.join(folder, "images"), os.path.join(folder, "labels")
    os.makedirs(images)
    os.makedirs(labels)
    for n, (key, (image, annotations)) in enumerate(sorted(sample_coco().items())):
        shutil.copy(os.path.join(sample_dir(), "images", image["file_name"]), os.path.join(images, key + ".png"))
        if n % 2:
            tifffile.imwrite(os.path.join(labels, key + "_label.tif"), label_image(image, annotations, np.int32))
        else:
            Image.fromarray(label_image(image, annotations)).save(os.path.join(labels, key + "_masks.png"))
    return images, labels
