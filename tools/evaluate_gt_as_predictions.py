#!/usr/bin/env python
"""Feed each image's ground truth back as predictions through NucleiEvaluator.

Every metric must come out perfect (IoU/Dice 100, DSB mAP 1.0, COCO AP 100),
the densest image included; anything else is a bug in the data or the
evaluator. Example:

    DETECTRON2_DATASETS=datasets python tools/evaluate_gt_as_predictions.py \
        dsb2018_train dsb2018_val dsb2018_test
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402,F401  (first: guards, dataset registration)
from detectron2.data import DatasetCatalog  # noqa: E402
from maskrcnnpp.evaluation import NucleiEvaluator  # noqa: E402
from maskrcnnpp.evaluation.nuclei_evaluator import ground_truth_as_instances  # noqa: E402


def evaluate_gt(dataset_name, output_dir=None, coco_ap=True):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+", help="registered dataset names")
    parser.add_argument("--output-dir", help="also write nuclei_metrics.json etc. here")
    parser.add_argument("--no-coco-ap", action="store_true", help="skip COCO AP")
    args = parser.parse_args()
    for name in args.datasets:
        start = time.perf_counter()
        output_dir = f"{args.output_dir}/{name}" if args.output_dir else None
        results, densest = evaluate_gt(name, output_dir, coco_ap=not args.no_coco_ap)
        seconds = time.perf_counter() - start
        print(f"== {name}: densest image has {densest} nuclei, {seconds:.1f} s")
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
