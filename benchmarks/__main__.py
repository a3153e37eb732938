"""``python -m benchmarks <job> [flags]``: the one entry point of the comparison suite.

Every job takes the flags it shares with others under the same name (``--results-dir``,
``--output-root``, ``--seeds``, ``--threads``, ``--render-only``); ``python -m benchmarks <job>
--help`` lists a job's own. A bad argument or a missing input stops a job with one line and exit
code 2.
"""
import argparse
import importlib
import sys

from maskrcnnpp.errors import run_command

from .measure import RESULTS, command_text

# job -> module (under benchmarks) with FLAGS (the shared flags it takes), run(args), and where it
# needs them add_arguments(parser) (its own flags) and DEFAULTS (of shared flags)
JOBS = {
    "compare": "nuclei.runner",
    "inference-cost": "nuclei.inference_cost",
    "semantic": "semantic.comparison",
    "head-choice": "semantic.head_choice",
    "pruning": "semantic.pruning",
    "neck-cost": "costs.neck_cost",
    "prediction-profile": "costs.prediction_profile",
    "tiled-inference": "costs.tiled_inference",
    "size-estimate": "nuclei.size_estimate",
    "zoo-table": "nuclei.zoo_table",
    "val-curve": "val_curve",
}
SHARED = {
    "results-dir": dict(default=RESULTS, help="where reports and run records are written (default: %(default)s)"),
    "output-root": dict(help="where trained runs keep their OUTPUT_DIRs (default: the job's folder under output/)"),
    "seeds": dict(type=int, nargs="+", help="the seeds to run (default: the job's)"),
    "threads": dict(type=int, default=1, help="torch threads (default: %(default)s)"),
    "render-only": dict(action="store_true", help="rebuild the report from the run records, run nothing"),
}


def job_module(name):
    return importlib.import_module(f"{__package__}.{JOBS[name]}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB", help=", ".join(JOBS))
    for name in JOBS:
        module = job_module(name)
        summary = module.__doc__.split("\n\n")[0].split(": ", 1)[-1]  # "The ``job`` job: what it does"
        sub = jobs.add_parser(name, help=summary.split(".")[0], description=summary)
        for flag in module.FLAGS:
            sub.add_argument(f"--{flag}", **SHARED[flag])
        getattr(module, "add_arguments", lambda _: None)(sub)
        sub.set_defaults(**getattr(module, "DEFAULTS", {}))
    args = parser.parse_args(argv)
    if getattr(args, "seeds", None) is not None and any(s < 0 for s in args.seeds):
        parser.error(f"--seeds {' '.join(map(str, args.seeds))}: seeds are 0 or more")
    if getattr(args, "threads", 1) < 1:
        parser.error(f"--threads {args.threads}: must be 1 or more")
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.command = command_text(argv)
    if "threads" in job_module(args.job).FLAGS:
        import torch

        torch.set_num_threads(args.threads)
    return run_command(job_module(args.job).run, args) or 0


if __name__ == "__main__":
    sys.exit(main())
