import os

import pytest

# pytest.ini puts the repository root (maskrcnnpp, benchmarks), tests/ and datasets/ on sys.path.
import maskrcnnpp  # noqa: F401  (guards + registration before any detectron2 import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO


@pytest.fixture
def fresh_loggers():
    """default_setup attaches (once per process) handlers to the stream of the test that ran it
    first; pytest closes that stream afterwards. Give every test that runs a command in-process
    its own."""
    import logging

    from detectron2.utils.logger import setup_logger

    def forget_handlers():
        for name in ("detectron2", "fvcore", "maskrcnnpp", "d2"):
            for handler in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(handler)
        setup_logger.cache_clear()

    forget_handlers()
    yield
    forget_handlers()
