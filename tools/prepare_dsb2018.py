#!/usr/bin/env python
"""Prepare DSB2018 stage1_train for Detectron2, run from a checkout
(installed as the `maskrcnnpp-prepare-dsb2018` command).

    python tools/prepare_dsb2018.py --source stage1_train.zip [--output-root datasets]

The logic lives in maskrcnnpp/data/prepare_dsb2018.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from maskrcnnpp.data.prepare_dsb2018 import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
