"""The one place that makes this checkout importable for the benchmark scripts.

Benchmarks run as ``python benchmarks/<name>.py`` (or are imported by
tools/compare.py and the tests), so this folder is on sys.path and each script
imports this module before maskrcnnpp. It puts the repository root first on
sys.path, so that the checkout's maskrcnnpp wins over an installed copy.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if REPO not in sys.path:
    sys.path.insert(0, REPO)
