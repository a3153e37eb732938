"""Feed each image's ground truth back as predictions through NucleiEvaluator.

Every metric must come out perfect (IoU/Dice 100, DSB mAP 1.0, COCO AP 100),
the densest image included; anything else is a bug in the data or the
evaluator. Example:

    DETECTRON2_DATASETS=datasets maskrcnnpp-evaluate-gt-as-predictions \\
        dsb2018_train dsb2018_val dsb2018_test

(from a checkout: python tools/evaluate_gt_as_predictions.py ...).
"""
import argparse
import json
import sys
import tempfile
import time

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.datasets import is_registered
from .nuclei_evaluator import NucleiEvaluator, ground_truth_as_instances

__all__ = ["evaluate_gt", "main"]


def evaluate_gt(dataset_name, output_dir=None, coco_ap=True):
    if output_dir is None and coco_ap and MetadataCatalog.get(dataset_name).get("json_file", None) is None:
        # No COCO file of its own (e.g. a _grey/_colour subset): COCOEvaluator converts the dicts
        # into a file in its output folder, which it needs even when nothing else is kept.
        with tempfile.TemporaryDirectory() as scratch:
            return evaluate_gt(dataset_name, scratch, coco_ap)
    records = DatasetCatalog.get(dataset_name)
    densest = max(len(r.get("annotations", [])) for r in records)
    evaluator = NucleiEvaluator(
        dataset_name,
        output_dir,
        coco_ap=coco_ap,
        max_dets_per_image=densest,
        distributed=False,
    )
    evaluator.reset()
    for record in records:
        inputs = [{k: record[k] for k in ("image_id", "file_name", "height", "width")}]
        evaluator.process(inputs, [{"instances": ground_truth_as_instances(record)}])
    results = evaluator.evaluate()
    return results, densest


def check_available(names):
    """A one-line reason why the first unusable dataset name cannot be evaluated, else None."""
    for name in names:
        if not is_registered(name):
            nuclei = sorted(
                n for n in DatasetCatalog.list()
                if MetadataCatalog.get(n).get("evaluator_type", None) == "nuclei"
                and MetadataCatalog.get(n).get("parent_dataset", None) is None  # not the _grey/_colour subsets
            )
            return f"dataset '{name}' is not registered (nuclei datasets, each also as _grey/_colour: {', '.join(nuclei)})"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", help="registered dataset names")
    parser.add_argument(
        "--output", "--output-dir", metavar="DIR", help="also write nuclei_metrics.json etc. to DIR/<dataset>/"
    )
    parser.add_argument("--no-coco-ap", action="store_true", help="skip COCO AP")
    args = parser.parse_args(argv)
    problem = check_available(args.datasets)
    if problem:
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return 2
    for name in args.datasets:
        start = time.perf_counter()
        output_dir = f"{args.output}/{name}" if args.output else None
        try:
            results, densest = evaluate_gt(name, output_dir, coco_ap=not args.no_coco_ap)
        except OSError as e:  # not prepared (the message says how to), or an unwritable --output
            print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        seconds = time.perf_counter() - start
        print(f"== {name}: densest image has {densest} nuclei, {seconds:.1f} s")
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
