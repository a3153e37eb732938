import os

import pytest

# pytest.ini puts the repository root (maskrcnnpp, benchmarks), tests/ and datasets/ on sys.path.
import maskrcnnpp  # noqa: F401  (guards + registration before any detectron2 import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Under pytest-xdist (pytest.ini runs a worker per core) each worker's torch takes its share of the
# cores, not all of them: two workers at two threads each on two cores run slower than one.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    import torch

    _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
    torch.set_num_threads(_THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))  # the commands tests run as processes


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
