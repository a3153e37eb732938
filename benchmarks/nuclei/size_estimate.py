"""The ``size-estimate`` job: the size head against the search and the annotated diameter.

Evaluates one detector three times on one split, as ``tools/train_net.py --eval-only`` does
(Trainer.test): at the diameter the search finds, at the size head's, and at each image's
annotated median diameter (the oracle). Writes results/size_estimate_<label>.md: fg IoU / Dice,
DSB mAP, segm AP, the estimate's error against the annotated diameter, and the evaluation's
seconds per image.
"""
import os
import time

from detectron2.modeling import build_model

from maskrcnnpp.config_loading import load_cfg
from maskrcnnpp.engine.setup import check_datasets
from maskrcnnpp.engine.trainer import Trainer
from maskrcnnpp.weights import load_weights_strictly

from ..measure import provenance, publish
from ..tables import fmt, table

FLAGS = ("results-dir",)
# name: (row title, config overrides)
METHODS = {
    "search": ("search (predicting at successive guesses)", ("TEST.DIAMETER_ESTIMATE", "search")),
    "size_head": ("size head", ("TEST.DIAMETER_ESTIMATE", "size_head", "TEST.SIZE_HEAD_CHECK", "0.0")),
    "size_head_checked": ("size head, checked by its nuclei (TEST.SIZE_HEAD_CHECK 0.15)",
                          ("TEST.DIAMETER_ESTIMATE", "size_head", "TEST.SIZE_HEAD_CHECK", "0.15")),
    "oracle": ("annotated diameter (oracle)", ("TEST.DIAMETER_SOURCE", "ground_truth")),
}


def add_arguments(parser):
    parser.add_argument("--config-file", required=True, help="the detector's config")
    parser.add_argument("--weights", required=True, help="the detector's checkpoint")
    parser.add_argument("--size-head", required=True, help="its size head (maskrcnnpp-train-size-head's file)")
    parser.add_argument("--dataset", default="dsb2018_val_fixed", help="the split scored (default: %(default)s)")
    parser.add_argument("--label", required=True, help="names the report: size_estimate_<label>.md")
    parser.add_argument("--output-dir", default=os.path.join("output", "size_estimate"),
                        help="where the evaluations write (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="the rows, in this order (default: all)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides for every row")


def evaluate(args, overrides):
    opts = ["MODEL.WEIGHTS", args.weights, "MODEL.SIZE_HEAD.WEIGHTS", args.size_head,
            "DATASETS.TEST", f"('{args.dataset}',)", "OUTPUT_DIR", args.output_dir, *overrides, *args.opts]
    cfg = load_cfg(args.config_file, opts)
    check_datasets(cfg, ("TEST",))
    model = build_model(cfg)
    load_weights_strictly(model, cfg.MODEL.WEIGHTS, args.config_file)
    model.eval()
    began = time.perf_counter()
    results = Trainer.test(cfg, model)
    nuclei = results["nuclei"]
    seconds = (time.perf_counter() - began) / nuclei["num_images"]
    return dict(nuclei, segm_ap=results.get("segm", {}).get("AP"), seconds_per_image=seconds)


def render(args, rows):
    lines = [
        f"# Diameter estimate on `{args.dataset}`: size head vs search vs annotated diameter",
        "",
        *provenance(args.command),
        f"- detector: `{args.weights}`; size head: `{args.size_head}`; config `{args.config_file}`",
        "- error: |estimated / annotated median diameter - 1| per image with nuclei; seconds: the whole "
        "evaluation per image (prediction at COCO AP's low score threshold, and scoring)",
        "",
    ]
    head = ["diameter from", "fg IoU (%)", "fg Dice (%)", "DSB mAP", "segm AP", "median error (%)",
            "> 1.5x off (%)", "s / image"]
    cells = [[title, fmt(m["fg_iou"]), fmt(m["fg_dice"]), fmt(m["dsb_map"], decimals=3), fmt(m["segm_ap"], decimals=1),
              fmt(m.get("diameter_median_error"), decimals=1), fmt(m.get("diameter_off_1.5x"), decimals=1),
              fmt(m["seconds_per_image"])] for title, m in rows]
    return "\n".join(lines + table(head, cells, "lrrrrrrr")) + "\n"


def run(args):
    rows = [(METHODS[m][0], evaluate(args, METHODS[m][1])) for m in args.methods]
    publish(render(args, rows), os.path.join(args.results_dir, f"size_estimate_{args.label}.md"))
    return 0
