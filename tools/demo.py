#!/usr/bin/env python
"""The ten-minute CPU demo, run from a checkout (installed as the `maskrcnnpp-demo` command).

    python tools/demo.py [--config-file FILE] [KEY VALUE ...]

The logic lives in maskrcnnpp/demo.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from maskrcnnpp.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
