"""What every benchmark measures with: the machine, the command, timers, parameter and FLOP counts."""
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import torch
from fvcore.nn import FlopCountAnalysis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command_text(argv=None):
    """The command a result came from, ``python -m benchmarks <argv>`` (argv: this process's when
    None), led by the two variables that change its figures, DETECTRON2_DATASETS and
    OMP_NUM_THREADS ("unset" when it is)."""
    argv = sys.argv[1:] if argv is None else argv
    return "DETECTRON2_DATASETS={} OMP_NUM_THREADS={} python -m benchmarks {}".format(
        os.environ.get("DETECTRON2_DATASETS", "datasets"),
        os.environ.get("OMP_NUM_THREADS", "unset"),
        " ".join(shlex.quote(a) for a in argv),
    ).rstrip()


def machine_description(device):
    text = f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
    text += f"{torch.get_num_threads()} threads"
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def git_commit():
    """HEAD's hash, with "+dirty" when the code differs from it.

    Changes under benchmarks/results/ do not count: a benchmark rewrites its own committed results.
    """
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


class Stopwatch:
    """Accumulated wall seconds and CPU seconds of this process (all its threads), as a context
    manager or between ``start()`` and ``stop()``.

    On a shared machine the wall time includes waiting for the cores; the CPU
    time is the work done, whatever the waiting.
    """

    def __init__(self, device="cpu"):
        self.device = device
        self.wall = 0.0
        self.cpu = 0.0

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def start(self):
        self._sync()
        self._start = (time.perf_counter(), time.process_time())

    def stop(self, keep=True):
        """End the interval; ``keep`` False leaves it out of the totals (a warm-up)."""
        self._sync()
        if keep:
            self.wall += time.perf_counter() - self._start[0]
            self.cpu += time.process_time() - self._start[1]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def timed_round_robin(fns, device, repeats, warmup=2):
    """Median (wall, CPU) seconds of each of ``fns``, timed in turn (a, b, c, a, b, c, ...), so
    that load from other processes falls on every one alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            with Stopwatch(device) as watch:
                fn()
            times[k].append((watch.wall, watch.cpu))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())


class _Inference(torch.nn.Module):
    """A GeneralizedRCNN's inference on one image tensor, returning tensors (fvcore traces those)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        height, width = image.shape[-2:]
        out = self.model.inference([{"image": image, "height": height, "width": width}],
                                   do_postprocess=False)[0]
        return out.pred_boxes.tensor, out.scores, out.pred_masks


def detector_gflops(model, image):
    """(whole model, backbone incl. neck) GFLOPs of ``model`` on one CHW image, counted by fvcore,
    and the number of detections the heads ran on.

    fvcore calls a multiply-accumulate one flop; ops it does not know (roi_align,
    nms) are left out. The mask head's share depends on how many instances the
    model detects in ``image``; the backbone's depends only on the image size.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            detections = len(_Inference(model)(image)[1])
            flops = FlopCountAnalysis(_Inference(model), (image,))
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total, by_module = flops.total(), flops.by_module()
    finally:
        model.train(was_training)
    return total / 1e9, by_module.get("model.backbone", 0) / 1e9, detections


def provenance(command, device="cpu", commit=True, date=False):
    """A report's lines on where it came from: command, machine, and the commit and date if asked."""
    return ([f"- command: `{command}`", f"- machine: {machine_description(device)}"]
            + ([f"- commit: {git_commit()}"] if commit else [])
            + ([f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"] if date else []))


def machine_line():
    """The machine a report was rendered on, for reports whose runs do not record theirs."""
    return f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"


def publish(text, path, show=True):
    """Write a report to ``path`` atomically (a kill never leaves half a report); print it when ``show``."""
    from maskrcnnpp.utils.json_io import atomic_write

    if show:
        print(text)
    with atomic_write(path, encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return text
