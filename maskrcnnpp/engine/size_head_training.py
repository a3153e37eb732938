"""Training the size head (modeling/size_head.py) on a trained, frozen detector.

    maskrcnnpp-train-size-head --config-file C.yaml MODEL.WEIGHTS run/model_final.pth OUTPUT_DIR run

A view of one of DATASETS.TRAIN's images: a ratio q drawn log-uniformly from
MODEL.SIZE_HEAD.VIEW_RANGE, the image rescaled so that its median nucleus becomes q times
INPUT.NUCLEUS_DIAMETER, and a random square of --crop view pixels of it.
The head learns the log of the view's diameter / the working diameter from the detector's
features; the label is the median annotated diameter of the nuclei centred in the view
(of the image when the view holds fewer than 3), so no labelling is needed beyond the
detector's own. Images without nuclei are left out. The detector does not change.

Then the estimate is made as prediction makes it (estimate.estimate_by_size_head) on each
image of DATASETS.TEST and compared with the annotated diameter. OUTPUT_DIR/size_head.pth
holds ``{"size_head": weights, "detector": MODEL.WEIGHTS, "training": ..., "metrics": ...}``;
pass it as MODEL.SIZE_HEAD.WEIGHTS (model-zoo files carry the head inside).

The detector's features of each view are computed once (a bank of --views-per-image
views per image) and the head is trained on them: the whole job takes minutes, so a
killed one is simply run again (its file is written atomically at the end).
"""
import argparse
import contextlib
import json
import logging
import math
import os
import time
from typing import NamedTuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model
from detectron2.structures import BoxMode
from detectron2.utils.logger import setup_logger

from ..data.diameter import annotation_area, equivalent_diameter, median_diameter
from ..data.size_views import rescaled_view
from ..errors import UserError, run_command
from ..evaluation.diameter_errors import diameter_errors
from ..modeling.size_head import build_size_head, detector_features
from ..predict.estimate import estimate_by_size_head
from ..predict.size_reading import SizeReader
from ..utils.json_io import atomic_write
from ..weights import load_weights_strictly
from .output_dir import hold_output_dir
from .setup import check_datasets, load_cfg

__all__ = ["SIZE_HEAD_FILE", "score_size_head", "train_size_head", "main"]

SIZE_HEAD_FILE = "size_head.pth"

logger = logging.getLogger(__name__)


# A view's label is the median diameter of the nuclei centred in it, when it holds this many;
# else the image's.
_MIN_NUCLEI_IN_VIEW = 3


class LabelledImage(NamedTuple):
    image: np.ndarray  # H x W x C in INPUT.FORMAT
    diameter: float  # median equivalent diameter of its nuclei
    centres: np.ndarray  # N x 2 (y, x) of its nuclei's boxes
    diameters: np.ndarray  # N equivalent diameters


def _labelled_images(dataset_names, image_format, key="DATASETS.TRAIN"):
    """A LabelledImage of every image with nuclei in the datasets, read once."""
    images = []
    for name in dataset_names:
        for record in DatasetCatalog.get(name):
            nuclei = [(a, annotation_area(a, record["height"], record["width"]))
                      for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
            nuclei = [(a, area) for a, area in nuclei if area > 0]
            if not nuclei:
                continue
            annotations, areas = zip(*nuclei)
            diameter = median_diameter(areas)
            boxes = np.array([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
                              for a in annotations])
            centres = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], axis=1)
            image = utils.read_image(record["file_name"], format=image_format)
            images.append(LabelledImage(image, diameter, centres, equivalent_diameter(areas)))
    if not images:
        raise UserError(f"{key} {tuple(dataset_names)}: no image with annotated nuclei to measure sizes on")
    return images


def _random_view(labelled, target, view_range, crop, rng):
    """A random training view and its label log(view diameter / target). (No flips: the head
    pools over the view, so a flipped view reads the same.)"""
    q = math.exp(rng.uniform(math.log(view_range[0]), math.log(view_range[1])))
    scale = q * target / labelled.diameter
    height, width = labelled.image.shape[:2]
    side = max(1, int(round(crop / scale)))
    h, w = min(side, height), min(side, width)
    y0, x0 = int(rng.randint(0, height - h + 1)), int(rng.randint(0, width - w + 1))
    view, real_scale = rescaled_view(labelled.image, scale, (y0, y0 + h, x0, x0 + w))
    y, x = labelled.centres[:, 0], labelled.centres[:, 1]
    inside = (y >= y0) & (y < y0 + h) & (x >= x0) & (x < x0 + w)
    diameter = float(np.median(labelled.diameters[inside])) if inside.sum() >= _MIN_NUCLEI_IN_VIEW else labelled.diameter
    return torch.as_tensor(view.astype("float32").transpose(2, 0, 1).copy()), math.log(diameter * real_scale / target)


def feature_bank(cfg, model, images, views_per_image=8, crop=256, seed=0, log_period=200):
    """[(features of a random view, its label)], ``views_per_image`` views of each LabelledImage: the
    detector's part of the work, done once (half precision), as it never changes."""
    rng = np.random.RandomState(seed)
    target, view_range = float(cfg.INPUT.NUCLEUS_DIAMETER), tuple(cfg.MODEL.SIZE_HEAD.VIEW_RANGE)
    in_features = tuple(cfg.MODEL.SIZE_HEAD.IN_FEATURES)
    bank, began, total = [], time.perf_counter(), len(images) * views_per_image
    with torch.no_grad():
        for _ in range(views_per_image):
            for labelled in images:
                view, label = _random_view(labelled, target, view_range, crop, rng)
                features = detector_features(model, view, in_features)
                bank.append(({f: v.half() for f, v in features.items()}, label))
                if len(bank) % log_period == 0:
                    logger.info(f"size head views {len(bank)}/{total}  "
                                f"{(time.perf_counter() - began) / len(bank):.3f} s/view")
    return bank


def train_size_head(cfg, model, bank, iterations=3000, batch=32, lr=1e-3, seed=0, log_period=250):
    """The head trained on ``bank`` (from :func:`feature_bank`): AdamW, cosine to 0."""
    head = build_size_head(cfg, model).to(model.pixel_mean.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / iterations)))
    rng = np.random.RandomState(seed + 1)
    head.train()
    running = []
    for iteration in range(iterations):
        chosen = [bank[i] for i in rng.randint(len(bank), size=batch)]
        predictions = torch.cat([head({k: v.float() for k, v in features.items()}) for features, _ in chosen])
        labels = torch.tensor([label for _, label in chosen], dtype=torch.float32)
        loss = torch.nn.functional.smooth_l1_loss(predictions, labels, beta=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if (iteration + 1) % log_period == 0 or iteration + 1 == iterations:
            logger.info(f"size head step {iteration + 1}/{iterations}  loss {np.mean(running):.4f}")
            running = []
    return head.eval()


def score_size_head(cfg, model, head, images):
    """The estimate, made as prediction makes it, against the annotated diameters of ``images``."""
    reader = SizeReader(model, head, tuple(cfg.MODEL.SIZE_HEAD.VIEW_RANGE))
    estimated, passes, began = [], [], time.perf_counter()
    for labelled in images:
        estimate = estimate_by_size_head(reader, labelled.image, float(cfg.TEST.DEFAULT_DIAMETER),
                                         float(cfg.INPUT.NUCLEUS_DIAMETER), int(cfg.TEST.DIAMETER_ESTIMATE_SIZE))
        estimated.append(estimate.diameter)
        passes.append(estimate.passes)
    metrics = diameter_errors(estimated, [labelled.diameter for labelled in images])
    metrics.update(mean_passes=float(np.mean(passes)) if passes else math.nan,
                   seconds_per_image=(time.perf_counter() - began) / max(1, len(images)))
    return metrics


def _parser():
    parser = argparse.ArgumentParser(
        prog="maskrcnnpp-train-size-head",
        description="Train the size head of a trained detector (MODEL.WEIGHTS) on DATASETS.TRAIN, "
                    "score its diameter estimate on DATASETS.TEST, write OUTPUT_DIR/size_head.pth.",
    )
    parser.add_argument("--config-file", required=True, help="the detector's config")
    parser.add_argument("--views-per-image", type=int, default=8, help="random views of each image (default 8)")
    parser.add_argument("--crop", type=int, default=256, help="side of a view, view pixels (default 256)")
    parser.add_argument("--iterations", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--batch", type=int, default=32, help="views per step (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, cosine to 0 (default 1e-3)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def _run(args):
    for flag in ("views_per_image", "crop", "iterations", "batch"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, not {getattr(args, flag)}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be a positive number, not {args.lr}")
    cfg = load_cfg(args.config_file, args.opts)
    if cfg.INPUT.SCALE_POLICY != "diameter":
        raise UserError(f"{args.config_file}: the size head is for INPUT.SCALE_POLICY diameter models, "
                        f"not {cfg.INPUT.SCALE_POLICY}")
    check_datasets(cfg)
    with contextlib.closing(hold_output_dir(cfg.OUTPUT_DIR)):
        return _train_and_write(args, cfg)


def _train_and_write(args, cfg):
    setup_logger(name="maskrcnnpp")
    torch.manual_seed(max(cfg.SEED, 0))
    model = build_model(cfg)
    load_weights_strictly(model, cfg.MODEL.WEIGHTS, args.config_file)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    train = _labelled_images(cfg.DATASETS.TRAIN, cfg.INPUT.FORMAT)
    logger.info(f"Training the size head on {len(train)} images of {', '.join(cfg.DATASETS.TRAIN)}")
    seed = max(cfg.SEED, 0)
    bank = feature_bank(cfg, model, train, args.views_per_image, args.crop, seed)
    head = train_size_head(cfg, model, bank, args.iterations, args.batch, args.lr, seed)
    metrics = {}
    for name in cfg.DATASETS.TEST:
        metrics[name] = score_size_head(cfg, model, head, _labelled_images([name], cfg.INPUT.FORMAT, "DATASETS.TEST"))
        m = metrics[name]
        logger.info(f"{name}: {m['images']} images, median error {m['median_error']:.1f} %, "
                    f"{m['off_share']:.1f} % more than 1.5x off, bias x{m['bias']:.3f}, "
                    f"{m['mean_passes']:.2f} looks, {m['seconds_per_image']:.3f} s per image")
    training = {"views_per_image": args.views_per_image, "crop": args.crop, "iterations": args.iterations,
                "batch": args.batch, "lr": args.lr, "datasets": list(cfg.DATASETS.TRAIN), "seed": seed}
    path = os.path.join(cfg.OUTPUT_DIR, SIZE_HEAD_FILE)
    with atomic_write(path, "wb") as f:
        torch.save({"size_head": head.state_dict(), "detector": cfg.MODEL.WEIGHTS, "training": training,
                    "metrics": metrics}, f)
    print(json.dumps({"size_head": path, "metrics": metrics}, indent=1))
    return 0


def main(argv=None):
    return run_command(_run, _parser().parse_args(argv))
