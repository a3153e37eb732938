#!/usr/bin/env python
"""Predict nuclei in new images with a trained Mask R-CNN / Mask R-CNN++.

    python tools/predict.py --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml \
        --input images/ more/*.tif one.png --output predictions \
        MODEL.WEIGHTS output/model_final.pth [MODEL.DEVICE cuda]

Writes, per input, ``overlays/<name>.png`` (nuclei outlined and filled) and
``labels/<name>.png`` (16-bit label image: 0 background, 1..N nuclei, overlaps
given to the higher-scoring nucleus), and ``coco_instances_results.json`` for
all inputs. Exit status: 0 all done, 1 some inputs failed (each reported in one
line, the others processed), 2 nothing done (bad config, weights or output folder).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402,F401  (first: registers parts and installs Detectron2 guards)

from maskrcnnpp.predict.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
