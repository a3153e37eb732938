"""The committed DSB2018 train/val/test split: how it was made, and how to load it.

Made once with::

    python -m maskrcnnpp.data.dsb2018_split --source stage1_train.zip \
        --fixed-source stage1_train_fixed.zip --seed 2018 --output maskrcnnpp/data/builtin/dsb2018_split.json
"""
import argparse
import json
import os
import random
from collections import defaultdict

from .dsb2018_convert import decode_png, to_saved_image
from .kaggle_source import KaggleSource

__all__ = ["SPLIT_NAMES", "PAPER_SIZES", "builtin_split_path", "load_split", "make_split", "main"]

SPLIT_NAMES = ("train", "val", "test")
PAPER_SIZES = {"train": 335, "val": 134, "test": 201}  # UNet++ paper (Zhou et al., TMI 2019)


def builtin_split_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin", "dsb2018_split.json")


def load_split(split=None):
    """A split as a dict with an id list per split name.

    ``split``: None (the committed split), a path to a split JSON, or a mapping
    ``{split name: [Kaggle ids]}`` (returned as is, e.g. for tests).
    """
    if split is None:
        split = builtin_split_path()
    if isinstance(split, (str, os.PathLike)):
        with open(split, encoding="utf-8") as f:
            split = json.load(f)
    return split


def split_names(split):
    """The split names a split mapping defines, in the canonical order first."""
    known = [n for n in SPLIT_NAMES if n in split]
    extra = [n for n, v in split.items() if n not in SPLIT_NAMES and isinstance(v, list) and n != "fixed_removed_ids"]
    return known + extra


def _stratum_of_each_image(source_path):
    strata = {}
    with KaggleSource(source_path) as source:
        for image_id, kinds in source.entries.items():
            pngs = kinds.get("images", [])
            if len(pngs) != 1:
                continue
            pixels, modality = to_saved_image(decode_png(source.read(pngs[0]), "image"))
            strata[image_id] = f"{modality} {pixels.shape[0]}x{pixels.shape[1]}"
    return strata


def _allocate(stratum_sizes, targets):
    """Per-stratum counts for each split: proportional, at least one of each split in
    strata of 3 or more images, and summing exactly to ``targets``."""
    total = sum(targets.values())
    quota = {s: {k: m * targets[k] / total for k in targets} for s, m in stratum_sizes.items()}
    alloc = {s: {k: int(q) for k, q in quota[s].items()} for s in quota}
    for s, m in stratum_sizes.items():
        if m >= len(targets):
            for k in targets:
                alloc[s][k] = max(alloc[s][k], 1)
    left = {s: m - sum(alloc[s].values()) for s, m in stratum_sizes.items()}
    deficit = {k: targets[k] - sum(alloc[s][k] for s in alloc) for k in targets}
    # Hand out the remaining images, largest fractional remainder first.
    by_remainder = sorted(((quota[s][k] - alloc[s][k], s, k) for s in quota for k in targets), reverse=True)
    for _, s, k in by_remainder:
        if left[s] > 0 and deficit[k] > 0:
            alloc[s][k] += 1
            left[s] -= 1
            deficit[k] -= 1
    for s in sorted(alloc):  # rare: what the remainders could not place
        for k in targets:
            n = min(left[s], deficit[k])
            alloc[s][k] += n
            left[s] -= n
            deficit[k] -= n
    return alloc


def make_split(source_path, seed=2018, sizes=None, fixed_source_path=None):
    """Split the images of a Kaggle source, stratified by modality and size (HxW)."""
    sizes = dict(sizes or PAPER_SIZES)
    strata = _stratum_of_each_image(source_path)
    if len(strata) != sum(sizes.values()):
        raise ValueError(f"{len(strata)} usable images, but the split sizes sum to {sum(sizes.values())}")
    members = defaultdict(list)
    for image_id, stratum in sorted(strata.items()):
        members[stratum].append(image_id)
    alloc = _allocate({s: len(ids) for s, ids in members.items()}, sizes)
    rng = random.Random(seed)
    split = {k: [] for k in sizes}
    for stratum in sorted(members):
        ids = members[stratum]
        rng.shuffle(ids)
        start = 0
        for k in sizes:
            split[k] += ids[start : start + alloc[stratum][k]]
            start += alloc[stratum][k]
    result = {
        "seed": seed,
        "method": (
            "stratified by modality (grey if R==G==B) and image size HxW; per stratum, counts proportional "
            "to the split sizes (largest remainder), at least one image per split in strata of >= 3 images; "
            "ids shuffled with random.Random(seed) within each stratum (strata and ids sorted first)"
        ),
        "source": os.path.basename(source_path),
        "sizes": {k: len(v) for k, v in split.items()},
        "strata": {s: {k: alloc[s][k] for k in sizes} for s in sorted(alloc)},
    }
    result.update({k: sorted(v) for k, v in split.items()})
    if fixed_source_path:
        with KaggleSource(fixed_source_path) as fixed:
            result["fixed_removed_ids"] = sorted(set(strata) - set(fixed.entries))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="original stage1_train zip or folder")
    parser.add_argument("--fixed-source", help="label-fixed zip or folder, to record the ids it removed")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--output", default=builtin_split_path())
    args = parser.parse_args(argv)
    split = make_split(args.source, seed=args.seed, fixed_source_path=args.fixed_source)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(split, f, indent=1)
        f.write("\n")
    print(f"wrote {args.output}: {split['sizes']}")


if __name__ == "__main__":
    main()
