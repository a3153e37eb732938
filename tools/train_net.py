#!/usr/bin/env python
"""Train or evaluate Mask R-CNN / Mask R-CNN++ (and the semantic UNet++) with Detectron2.

    python tools/train_net.py --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file ... --resume          # continue from last_checkpoint
    python tools/train_net.py --config-file ... --num-gpus 8      # one machine, 8 GPUs

Trailing KEY VALUE pairs override the config. Logs, metrics.json, tensorboard
events and checkpoints go to OUTPUT_DIR.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402  (first: registers parts and installs Detectron2 guards)

from maskrcnnpp.engine import Trainer, setup_cfg  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.engine import default_argument_parser, launch  # noqa: E402


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
