"""The ten-minute CPU demo: train Mask R-CNN++ on the embedded DSB2018 sample, evaluate, predict.

    maskrcnnpp-demo                      # or, from a checkout: python tools/demo.py

Trains the R-18 nested-FPN model of configs/nuclei/demo_R_18_NestedFPN_cpu.yaml
on ``dsb2018_sample_train`` (about 10 minutes on 2 CPU cores), evaluates it on
``dsb2018_sample_val`` with NucleiEvaluator (foreground IoU/Dice, DSB mAP, COCO
AP), then writes overlays, 16-bit label images and a COCO results JSON for the
val images with the same code as maskrcnnpp-predict, and prints where they are.
Trailing KEY VALUE pairs override the config (e.g. SOLVER.MAX_ITER 100).
"""
import argparse
import os
import sys
import time

from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup, hooks

from .engine import Trainer
from .engine.output_dir import hold_output_dir
from .engine.setup import check_datasets, load_cfg
from .errors import EXIT_USER_ERROR, UserError, debug_enabled
from .predict import NucleiPredictor, predict_batch, prepare_output_dir

__all__ = ["DEMO_CONFIG", "DemoTrainer", "build_parser", "headline", "main"]

DEMO_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "nuclei", "demo_R_18_NestedFPN_cpu.yaml"
)
EXIT_OK, EXIT_SOME_IMAGES_FAILED = 0, 1


class DemoTrainer(Trainer):
    """Trainer whose evaluation after the last iteration keeps its results in ``eval_results``.

    The EvalHook that DefaultTrainer builds is replaced, in place, by one whose
    function evaluates exactly as DefaultTrainer's does (``self.test``) and also
    stores the results, so the demo evaluates once and still logs the metrics.
    """

    eval_results = None

    def build_hooks(self):
        built = super().build_hooks()
        return [
            hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self.evaluate) if isinstance(h, hooks.EvalHook) else h
            for h in built
        ]

    def evaluate(self):
        self.eval_results = self.test(self.cfg, self.model)
        return self.eval_results


def train_and_evaluate(cfg):
    trainer = DemoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # its EvalHook runs Trainer.test (NucleiEvaluator) after the last iteration
    return trainer.eval_results


def predict_test_images(cfg, weights):
    predict_cfg = cfg.clone()
    predict_cfg.defrost()
    predict_cfg.MODEL.WEIGHTS = weights
    layout = prepare_output_dir(os.path.join(cfg.OUTPUT_DIR, "predictions"))
    predictor = NucleiPredictor(predict_cfg)  # keeps TEST.NUCLEI.SCORE_THRESHOLD, as evaluation
    images = [record["file_name"] for record in DatasetCatalog.get(cfg.DATASETS.TEST[0])]
    return predict_batch(predictor, images, layout)


def headline(results):
    nuclei, segm = results.get("nuclei", {}), results.get("segm", {})
    parts = [f"{key} {nuclei[key]:.3g}" for key in ("fg_iou", "fg_dice", "dsb_map") if key in nuclei]
    parts += [f"segm AP {segm['AP']:.3g}"] if "AP" in segm else []
    return ", ".join(parts) or "no metrics (nothing evaluated)"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file", default=DEMO_CONFIG, metavar="FILE",
        help="default: the checkout's configs/nuclei/demo_R_18_NestedFPN_cpu.yaml",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser


def setup(args):
    """(the frozen config, with logging and OUTPUT_DIR set up; the OUTPUT_DIR lock to keep while
    the demo runs); UserError (one line) on bad input or a folder in use."""
    cfg = load_cfg(args.config_file, args.opts)
    check_datasets(cfg)
    lock = hold_output_dir(cfg.OUTPUT_DIR)
    cfg.freeze()
    default_setup(cfg, args)  # logging, seed, config.yaml in OUTPUT_DIR
    return cfg, lock


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg, lock = setup(args)  # noqa: F841  (the lock is held until the demo exits)
    except UserError as e:
        if debug_enabled():
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR

    start = time.perf_counter()
    results = train_and_evaluate(cfg)
    trained = time.perf_counter()
    summary = predict_test_images(cfg, os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    done = time.perf_counter()

    print(f"\nTrained and evaluated in {(trained - start) / 60:.1f} min on {cfg.DATASETS.TRAIN[0]}.")
    print(f"{cfg.DATASETS.TEST[0]}: {headline(results or {})}")
    print(f"Predicted {summary.num_nuclei} nuclei in {len(summary.images)} images in {done - trained:.0f} s.")
    print(f"Output folder: {os.path.abspath(summary.output_dir)}")
    return EXIT_SOME_IMAGES_FAILED if summary.errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
