#!/usr/bin/env python
"""Put a trained model into the model zoo (see maskrcnnpp/model_zoo/export.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import maskrcnnpp  # noqa: E402,F401  (first: registers parts and installs Detectron2 guards)

from maskrcnnpp.model_zoo.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
