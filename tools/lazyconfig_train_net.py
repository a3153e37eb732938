#!/usr/bin/env python
"""Train or evaluate a LazyConfig (Python) config, as Detectron2's tools/lazyconfig_train_net.py:

    python tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_R_50_NestedFPN_1x.py
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model_final.pth
    python tools/lazyconfig_train_net.py --config-file ... --resume          # continue from the last checkpoint
    python tools/lazyconfig_train_net.py --config-file ... --num-gpus 8 train.output_dir=output/nested

Trailing key=value pairs override the config (train.max_iter=100, dataloader.train.total_batch_size=2,
train.device=cpu). Logs, metrics.json, tensorboard events and checkpoints go to train.output_dir.
A bad file, key or value stops with one line and exit code 2 (MASKRCNNPP_DEBUG=1 shows the traceback).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402  (first: registers parts and installs Detectron2 guards)

from detectron2.config import instantiate  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup  # noqa: E402

from maskrcnnpp.engine import load_weights_strictly  # noqa: E402
from maskrcnnpp.engine.lazy_training import evaluate, load_lazy_config, train  # noqa: E402
from maskrcnnpp.engine.setup import launch_locked  # noqa: E402
from maskrcnnpp.config import check_device  # noqa: E402
from maskrcnnpp.errors import run_command  # noqa: E402


def main(args, cfg):
    default_setup(cfg, args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        # Evaluation refuses weights that do not match the model (training accepts them).
        load_weights_strictly(model, cfg.train.init_checkpoint, args.config_file)
        return evaluate(cfg, model)
    train(cfg, resume=args.resume)


def checked_config(args):
    cfg = load_lazy_config(args.config_file, args.opts)
    check_device(cfg.train.device, key="train.device", on_cpu="train.device=cpu")
    return cfg


def run(argv=None):
    args = default_argument_parser().parse_args(argv)
    cfg = run_command(checked_config, args)
    return launch_locked(main, args, cfg, cfg.train.output_dir, key="train.output_dir")


if __name__ == "__main__":
    run()
