"""The comparison suite: the benchmarks behind benchmarks/results/ (see benchmarks/README.md).

Run a job with ``python -m benchmarks <job> [flags]`` from the repository root.
"""
import maskrcnnpp  # noqa: F401  (guards and dataset registration before any detectron2 import)
