#!/usr/bin/env python
"""Prepare DSB2018 stage1_train for Detectron2 (same as `maskrcnnpp-prepare-dsb2018`).

    python datasets/prepare_dsb2018.py --source stage1_train.zip [--output-root datasets]
"""
import os
import sys

if __name__ == "__main__":
    # Run from a checkout without installing: make the package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from maskrcnnpp.data.prepare_dsb2018 import main

    sys.exit(main())
