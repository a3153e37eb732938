#!/usr/bin/env python
"""Make the committed DSB2018 train/val/test split (run once; its output is committed).

    python datasets/make_dsb2018_split.py --source stage1_train.zip \
        --fixed-source stage1_train_fixed.zip --seed 2018 --output maskrcnnpp/data/builtin/dsb2018_split.json
"""
import argparse
import json
import os
import sys

# A one-off developer script: it uses the installed package (install.sh installs it editable).
from maskrcnnpp.data.dsb2018_convert import BadImage, decode_png, to_saved_image
from maskrcnnpp.data.dsb2018_split import PAPER_SIZES, builtin_split_path
from maskrcnnpp.data.kaggle_source import KaggleSource, LayoutError
from maskrcnnpp.data.stratified_split import stratified_split  # noqa: E402
from maskrcnnpp.utils.json_io import atomic_write  # noqa: E402

METHOD = (
    "stratified by modality (grey if R==G==B) and image size HxW; per stratum, counts proportional "
    "to the split sizes (largest remainder), at least one image per split in strata of >= 3 images; "
    "ids shuffled with random.Random(seed) within each stratum (strata and ids sorted first)"
)


def stratum_of_each_image(source_path):
    """{image id: "<modality> <H>x<W>"} of the images with exactly one PNG."""
    strata = {}
    with KaggleSource(source_path) as source:
        for image_id, kinds in source.entries.items():
            pngs = kinds.get("images", [])
            if len(pngs) != 1:
                continue
            pixels, modality = to_saved_image(decode_png(source.read(pngs[0]), "image"))
            strata[image_id] = f"{modality} {pixels.shape[0]}x{pixels.shape[1]}"
    return strata


def make_split(source_path, seed=2018, sizes=None, fixed_source_path=None):
    """Split the images of a Kaggle source, stratified by modality and size (HxW)."""
    sizes = dict(sizes or PAPER_SIZES)
    strata = stratum_of_each_image(source_path)
    if len(strata) != sum(sizes.values()):
        raise ValueError(f"{len(strata)} usable images, but the split sizes sum to {sum(sizes.values())}")
    split, counts = stratified_split(strata, sizes, seed)
    result = {
        "seed": seed,
        "method": METHOD,
        "source": os.path.basename(source_path),
        "sizes": {k: len(v) for k, v in split.items()},
        "strata": counts,
    }
    result.update(split)
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
    try:
        split = make_split(args.source, seed=args.seed, fixed_source_path=args.fixed_source)
    except ValueError as e:
        print(f"make_dsb2018_split: error: {args.source}: {e}", file=sys.stderr)
        return 2
    except (LayoutError, BadImage, OSError) as e:  # their messages name the source
        print(f"make_dsb2018_split: error: {e}", file=sys.stderr)
        return 2
    with atomic_write(args.output, encoding="utf-8") as f:
        json.dump(split, f, indent=1)
        f.write("\n")
    print(f"wrote {args.output}: {split['sizes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
