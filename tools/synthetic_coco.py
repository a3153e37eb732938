#!/usr/bin/env python
"""Write a small synthetic dataset in COCO's layout, run from a checkout (installed as the
`maskrcnnpp-synthetic-coco` command), so any COCO config can be smoke-tested without COCO:

    python tools/synthetic_coco.py --output-root datasets/synthetic
    DETECTRON2_DATASETS=datasets/synthetic python tools/train_net.py \
        --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_1x.yaml ...

The logic lives in maskrcnnpp/data/synthetic_coco.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402,F401  (Detectron2 guards and dataset registration first)
from maskrcnnpp.data.synthetic_coco import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
