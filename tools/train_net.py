#!/usr/bin/env python
"""Train or evaluate Mask R-CNN / Mask R-CNN++ (and the semantic UNet++) with Detectron2.

    python tools/train_net.py --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file ... --resume          # continue from last_checkpoint
    python tools/train_net.py --config-file ... --num-gpus 8      # one machine, 8 GPUs

Trailing KEY VALUE pairs override the config. Logs, metrics.json, tensorboard
events and checkpoints go to OUTPUT_DIR. A bad config key or value, dataset
name or weights file stops with one line and exit code 2 (MASKRCNNPP_DEBUG=1
shows the traceback).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402  (first: registers parts and installs Detectron2 guards)

from detectron2.engine import default_argument_parser  # noqa: E402

from maskrcnnpp.engine import NucleiCheckpointer, Trainer, load_weights_strictly  # noqa: E402
from maskrcnnpp.engine.trainer import train_or_explain  # noqa: E402
from maskrcnnpp.engine.setup import checked_cfg, launch_locked, setup_cfg  # noqa: E402
from maskrcnnpp.errors import run_command  # noqa: E402


def main(args, cfg):
    cfg = setup_cfg(args, cfg)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        # Evaluation refuses weights that do not match the model (training accepts them).
        checkpointer = NucleiCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        use_last = args.resume and checkpointer.has_checkpoint()
        weights = checkpointer.get_checkpoint_file() if use_last else cfg.MODEL.WEIGHTS
        load_weights_strictly(model, weights, args.config_file)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return train_or_explain(trainer, cfg.OUTPUT_DIR)


def run(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    # Checked once, here, before the workers start: a mistake is one line, not N tracebacks.
    cfg = run_command(checked_cfg, args)
    return launch_locked(main, args, cfg, cfg.OUTPUT_DIR)


if __name__ == "__main__":
    run()
