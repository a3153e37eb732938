#!/usr/bin/env python
"""Train the size head of a trained Mask R-CNN (++) so that prediction finds the nuclei's size
in one cheap look instead of a search (see maskrcnnpp/engine/size_head_training.py).

    python tools/train_size_head.py --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml \
        MODEL.WEIGHTS output/model_final.pth OUTPUT_DIR output

Writes OUTPUT_DIR/size_head.pth; predict with MODEL.SIZE_HEAD.WEIGHTS output/size_head.pth.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402,F401  (first: registers parts and installs Detectron2 guards)

from maskrcnnpp.engine.size_head_training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
