#!/usr/bin/env python
"""Mask R-CNN (FPN) vs Mask R-CNN++ (nested FPN) on DSB2018 nuclei, over seeds.

    DETECTRON2_DATASETS=datasets python tools/compare.py --profile cpu-small
    python tools/compare.py --profile gpu-paper --model nested --seed 1   # one run per command
    python tools/compare.py --profile cpu-small --render-only             # rebuild the report
    python tools/compare.py --profile cpu-small-nested64                  # an ablation of the nested model

Writes benchmarks/results/nuclei_instance_<profile>.md and .png, and one JSON per
run under benchmarks/results/nuclei_runs/<profile>/. Finished runs are skipped;
an unfinished one resumes from its last checkpoint in output/compare/<profile>/.
The logic lives in benchmarks/nuclei_comparison.py.

On a GPU machine that only returns what is written under $OUT, run one model
and seed per command with --results-dir "$OUT", then copy
$OUT/nuclei_runs/gpu-paper/*.json into benchmarks/results/nuclei_runs/gpu-paper/
and re-render with --render-only.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

from nuclei_comparison import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
