#!/usr/bin/env python
"""Import a folder of images and a folder of instance label images as a dataset, run from a
checkout (installed as the `maskrcnnpp-import-labels` command).

    python tools/import_labels.py --images my_images/ --labels my_labels/ --name mynuclei

The logic lives in maskrcnnpp/data/import_labels.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from maskrcnnpp.data.import_labels import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
