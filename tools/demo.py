#!/usr/bin/env python
"""The ten-minute CPU demo: train Mask R-CNN++ on the embedded DSB2018 sample, evaluate, predict.

    python tools/demo.py

Trains the R-18 nested-FPN model of configs/nuclei/demo_R_18_NestedFPN_cpu.yaml
on ``dsb2018_sample_train`` (about 10 minutes on 2 CPU cores), evaluates it on
``dsb2018_sample_val`` with NucleiEvaluator (foreground IoU/Dice, DSB mAP, COCO
AP), then writes overlays, 16-bit label images and a COCO results JSON for the
val images with the same code as tools/predict.py, and prints where they are.
Trailing KEY VALUE pairs override the config (e.g. SOLVER.MAX_ITER 100).
"""
import argparse
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import maskrcnnpp  # noqa: E402,F401  (first: registers parts and installs Detectron2 guards)

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.engine import default_setup  # noqa: E402

from maskrcnnpp.engine import Trainer  # noqa: E402
from maskrcnnpp.engine.setup import load_cfg  # noqa: E402
from maskrcnnpp.predict import NucleiPredictor, predict_batch, prepare_output_dir  # noqa: E402

DEMO_CONFIG = os.path.join(ROOT, "configs", "nuclei", "demo_R_18_NestedFPN_cpu.yaml")


def train_and_evaluate(cfg):
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # its EvalHook runs Trainer.test (NucleiEvaluator) after the last iteration
    results = getattr(trainer, "_last_eval_results", None)
    return results if results is not None else Trainer.test(cfg, trainer.model)


def predict_test_images(cfg, weights):
    predict_cfg = cfg.clone()
    predict_cfg.defrost()
    predict_cfg.MODEL.WEIGHTS = weights
    layout = prepare_output_dir(os.path.join(cfg.OUTPUT_DIR, "predictions"))
    predictor = NucleiPredictor(predict_cfg, cfg.TEST.NUCLEI.SCORE_THRESHOLD)
    images = [record["file_name"] for record in DatasetCatalog.get(cfg.DATASETS.TEST[0])]
    return predict_batch(predictor, images, layout)


def headline(results):
    nuclei, segm = results.get("nuclei", {}), results.get("segm", {})
    parts = [f"{key} {nuclei[key]:.3g}" for key in ("fg_iou", "fg_dice", "dsb_map") if key in nuclei]
    parts += [f"segm AP {segm['AP']:.3g}"] if "AP" in segm else []
    return ", ".join(parts) or "no metrics (nothing evaluated)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEMO_CONFIG, metavar="FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = parser.parse_args(argv)
    cfg = load_cfg(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)  # logging, seed, config.yaml in OUTPUT_DIR

    start = time.perf_counter()
    results = train_and_evaluate(cfg)
    trained = time.perf_counter()
    summary = predict_test_images(cfg, os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    done = time.perf_counter()

    print(f"\nTrained and evaluated in {(trained - start) / 60:.1f} min on {cfg.DATASETS.TRAIN[0]}.")
    print(f"{cfg.DATASETS.TEST[0]}: {headline(results)}")
    print(f"Predicted {summary.num_nuclei} nuclei in {len(summary.images)} images in {done - trained:.0f} s.")
    print(f"Output folder: {os.path.abspath(summary.output_dir)}")
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
