#!/usr/bin/env python
"""Ground truth fed back as predictions must score perfectly, run from a checkout
(installed as the `maskrcnnpp-evaluate-gt-as-predictions` command).

    DETECTRON2_DATASETS=datasets python tools/evaluate_gt_as_predictions.py \
        dsb2018_train dsb2018_val dsb2018_test

The logic lives in maskrcnnpp/evaluation/gt_as_predictions.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from maskrcnnpp.evaluation.gt_as_predictions import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
