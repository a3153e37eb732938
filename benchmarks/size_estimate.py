#!/usr/bin/env python
"""The size head against the search and the annotated diameter (the oracle), on one split.

    python benchmarks/size_estimate.py --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml \
        --weights output/model_final.pth --size-head output/size_head.pth --dataset dsb2018_val_fixed \
        --label val

Evaluates the detector three times, as tools/train_net.py --eval-only does (Trainer.test):
with the diameter found by the search, by the size head, and with each image's annotated
median diameter. Prints fg IoU / Dice, DSB mAP, segm AP, how far the estimate is from the
annotated diameter, and the evaluation's seconds per image; writes
benchmarks/results/size_estimate_<label>.md.
"""
import argparse
import os
import sys
import time

import repo_path  # noqa: F401  (this checkout's maskrcnnpp first on sys.path)
import maskrcnnpp  # noqa: E402,F401  (its warning filters and guards first)
from measure import REPO, command_text, git_commit, machine_description, publish  # noqa: E402

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from maskrcnnpp.engine.setup import check_datasets, load_cfg  # noqa: E402
from maskrcnnpp.engine.trainer import Trainer  # noqa: E402
from maskrcnnpp.errors import run_command  # noqa: E402
from maskrcnnpp.weights import load_weights_strictly  # noqa: E402

# (row title, config overrides)
METHODS = (
    ("search (predicting at successive guesses)", ("TEST.DIAMETER_ESTIMATE", "search")),
    ("size head", ("TEST.DIAMETER_ESTIMATE", "size_head")),
    ("annotated diameter (oracle)", ("TEST.DIAMETER_SOURCE", "ground_truth")),
)


def evaluate(args, overrides):
    opts = ["MODEL.WEIGHTS", args.weights, "MODEL.SIZE_HEAD.WEIGHTS", args.size_head,
            "DATASETS.TEST", f"('{args.dataset}',)", "OUTPUT_DIR", args.output_dir] + list(overrides) + args.opts
    cfg = load_cfg(args.config_file, opts)
    check_datasets(cfg, ("TEST",))
    model = build_model(cfg)
    load_weights_strictly(model, cfg.MODEL.WEIGHTS, args.config_file)
    model.eval()
    began = time.perf_counter()
    results = Trainer.test(cfg, model)
    seconds = time.perf_counter() - began
    nuclei = results["nuclei"]
    return dict(nuclei, segm_ap=results.get("segm", {}).get("AP"), seconds_per_image=seconds / nuclei["num_images"])


def render(args, rows, command):
    lines = [
        f"# Diameter estimate on `{args.dataset}`: size head vs search vs annotated diameter",
        "",
        f"- command: `{command}`",
        f"- machine: {machine_description('cpu')}",
        f"- commit: {git_commit()}",
        f"- detector: `{args.weights}`; size head: `{args.size_head}`; config `{os.path.relpath(args.config_file, REPO)}`",
        "- error: |estimated / annotated median diameter - 1| per image (images with nuclei); "
        "seconds: the whole evaluation (prediction at a low score threshold for COCO AP, and scoring) per image",
        "",
        "| diameter from | fg IoU (%) | fg Dice (%) | DSB mAP | segm AP | median error (%) | > 1.5x off (%) | s / image |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for title, m in rows:
        error = m.get("diameter_median_error")
        off = m.get("diameter_off_1.5x")
        lines.append(
            f"| {title} | {m['fg_iou']:.2f} | {m['fg_dice']:.2f} | {m['dsb_map']:.3f} | "
            f"{m['segm_ap']:.1f} | {'-' if error is None else f'{error:.1f}'} | {'-' if off is None else f'{off:.1f}'} | "
            f"{m['seconds_per_image']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="the detector's checkpoint")
    parser.add_argument("--size-head", required=True, help="its size head (maskrcnnpp-train-size-head's file)")
    parser.add_argument("--dataset", default="dsb2018_val_fixed")
    parser.add_argument("--label", required=True, help="names the result file")
    parser.add_argument("--output-dir", default=os.path.join("output", "size_estimate"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every row")
    args = parser.parse_args(argv)
    setup_logger(name="maskrcnnpp")
    setup_logger(name="detectron2")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    rows = [(title, run_command(evaluate, args, overrides)) for title, overrides in METHODS]
    publish(render(args, rows, command_text(__file__, argv)),
            os.path.join(REPO, "benchmarks", "results", f"size_estimate_{args.label}.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
