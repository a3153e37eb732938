import os
import sys

import pytest

# Tests import the helpers next to them (synthetic.py) and the repo's package.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import maskrcnnpp  # noqa: E402,F401  (guards + registration before any detectron2 import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO
