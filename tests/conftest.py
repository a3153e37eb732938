import os

import pytest

# pytest.ini puts the repository root, tests/ and benchmarks/ on sys.path.
import maskrcnnpp  # noqa: F401  (guards + registration before any detectron2 import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO
