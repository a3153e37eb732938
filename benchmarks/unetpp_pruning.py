#!/usr/bin/env python
"""Parameters and inference speed of UNet++ pruned to L1..L4 and of the ensemble of heads.

    OMP_NUM_THREADS=1 python benchmarks/unetpp_pruning.py --threads 1

Builds the paper's UNet++ with deep supervision (configs/nuclei/unetpp_ds.yaml,
random weights: speed does not depend on them) and times the network itself
(normalised 96 x 96 batches -> foreground probability) for every mode, the
modes taking turns round after round so that load from other processes hits
them alike. Writes a markdown table to benchmarks/results/.
"""
import argparse
import datetime
import os
import shlex
import statistics
import sys
import time

import torch

from repo_path import REPO  # this checkout's maskrcnnpp first on sys.path
from measure import cpu_model  # noqa: E402
import maskrcnnpp  # noqa: E402,F401  (registers the meta-architecture)

from detectron2.modeling import build_model  # noqa: E402
from maskrcnnpp.engine.setup import load_cfg  # noqa: E402
from maskrcnnpp.utils.json_io import atomic_write  # noqa: E402

PAPER = {"L1": "0.1M", "L2": "0.5M", "L3": "2.2M", "L4": "9.0M"}


def build_modes(config_file):
    cfg = load_cfg(config_file, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    modes = {f"L{k}": model.pruned(k) for k in range(1, model.depth + 1)}
    modes["ensemble"] = model
    return modes


def time_modes(modes, batch, rounds, warmup):
    times = {name: [] for name in modes}
    with torch.no_grad():
        for _ in range(warmup):
            for m in modes.values():
                m.predict_probability(batch)
        for _ in range(rounds):
            for name, m in modes.items():
                start = time.perf_counter()
                m.predict_probability(batch)
                times[name].append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config-file", default=os.path.join(REPO, "configs/nuclei/unetpp_ds.yaml")
    )
    parser.add_argument("--size", type=int, default=96, help="side of the input images")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output", default=os.path.join(REPO, "benchmarks/results/unetpp_pruning_cpu.md")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    modes = build_modes(args.config_file)
    batch = torch.randn(args.batch, 3, args.size, args.size)
    times = time_modes(modes, batch, args.rounds, args.warmup)

    rate = {n: args.batch / statistics.median(t) for n, t in times.items()}
    rows = []
    for name, m in modes.items():
        params = sum(p.numel() for p in m.parameters())
        rows.append(
            f"| {name} | {params / 1e6:.3f}M | {PAPER.get(name, '9.0M')} | {rate[name]:.1f} "
            f"| {1000 / rate[name]:.1f} | {rate[name] / rate['L4']:.2f}x |"
        )
    command = "OMP_NUM_THREADS={} python {}".format(
        os.environ.get("OMP_NUM_THREADS", "unset"),
        " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
    )
    text = "\n".join(
        [
            "# UNet++ pruning: parameters and CPU inference speed",
            "",
            "UNet++ with deep supervision at the paper's filters (32, 64, 128, 256, 512; depth 4; "
            "3-channel input), random weights. `L_k` is `model.pruned(k)`: encoder levels 0..k "
            "and the nodes X^{0,k} needs, with its head; `ensemble` is the full model averaging "
            "its four heads. "
            f"Input: batches of {args.batch} images of {args.size}x{args.size}, network only "
            "(normalised tensor -> probability). Speed: median over "
            f"{args.rounds} rounds in which the modes take turns "
            f"(after {args.warmup} warm-up rounds).",
            "",
            "| model | parameters | paper | images/s | ms/image | speed vs L4 |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Paper (Zhou et al., TMI 2019): pruned to L2, UNet++ runs about 3x faster "
            "than L4 (GPU).",
            "",
            f"- command: `{command}`",
            f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs (shared with other jobs), "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "",
        ]
    )
    with atomic_write(args.output, encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
