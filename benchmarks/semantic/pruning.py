"""The ``pruning`` job: parameters and inference speed of UNet++ pruned to L1..L4 and of its ensemble.

Builds the paper's UNet++ with deep supervision (configs/nuclei/unetpp_ds.yaml, random weights:
speed does not depend on them) and times the network itself (normalised batches -> foreground
probability) for every mode, the modes taking turns round after round. Writes
results/unetpp_pruning_cpu.md.
"""
import datetime
import os

import torch
from detectron2.modeling import build_model

from maskrcnnpp.engine.setup import load_cfg

from ..measure import REPO, count_parameters, cpu_model, publish, timed_round_robin
from ..tables import table

FLAGS = ("results-dir", "threads")
PAPER = {"L1": "0.1M", "L2": "0.5M", "L3": "2.2M", "L4": "9.0M"}


def add_arguments(parser):
    parser.add_argument("--config-file", default=os.path.join(REPO, "configs/nuclei/unetpp_ds.yaml"))
    parser.add_argument("--size", type=int, default=96, help="side of the input images")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)


def build_modes(config_file):
    model = build_model(load_cfg(config_file, ["MODEL.DEVICE", "cpu"])).eval()
    modes = {f"L{k}": model.pruned(k) for k in range(1, model.depth + 1)}
    modes["ensemble"] = model
    return modes


def run(args):
    torch.manual_seed(0)
    modes = build_modes(args.config_file)
    batch = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        times = timed_round_robin([lambda m=m: m.predict_probability(batch) for m in modes.values()],
                                  "cpu", args.rounds, args.warmup)
    rate = {name: args.batch / wall for name, (wall, _) in zip(modes, times)}
    rows = [[name, f"{count_parameters(m) / 1e6:.3f}M", PAPER.get(name, "9.0M"), f"{rate[name]:.1f}",
             f"{1000 / rate[name]:.1f}", f"{rate[name] / rate['L4']:.2f}x"] for name, m in modes.items()]
    lines = [
        "# UNet++ pruning: parameters and CPU inference speed",
        "",
        "UNet++ with deep supervision at the paper's filters (32, 64, 128, 256, 512; depth 4; "
        "3-channel input), random weights. `L_k` is `model.pruned(k)`: encoder levels 0..k "
        "and the nodes X^{0,k} needs, with its head; `ensemble` is the full model averaging "
        f"its four heads. Input: batches of {args.batch} images of {args.size}x{args.size}, network only "
        f"(normalised tensor -> probability). Speed: median over {args.rounds} rounds in which the modes "
        f"take turns (after {args.warmup} warm-up rounds).",
        "",
        *table(["model", "parameters", "paper", "images/s", "ms/image", "speed vs L4"], rows, "llllll"),
        "",
        "Paper (Zhou et al., TMI 2019): pruned to L2, UNet++ runs about 3x faster than L4 (GPU).",
        "",
        f"- command: `{args.command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs (shared with other jobs), "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
    ]
    publish("\n".join(lines), os.path.join(args.results_dir, "unetpp_pruning_cpu.md"))
    return 0
