"""A profile's chart (PNG): both models' metrics, their paired differences, and the costs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from maskrcnnpp.utils.json_io import atomic_write  # noqa: E402

from ..records import MODEL_ORDER  # noqa: E402
from .metrics import METRICS, aggregate, by_model, cost_row, metric_value, model_cost, paired_differences  # noqa: E402

COST_LABELS = {"params_m": "params", "gmacs_backbone": "GFLOPs\nbackbone+neck",
               "train_cpu": "train CPU\ns/iter", "infer_cpu": "inference\nCPU s/img"}


def render_chart(profile_name, runs, path, costs=None):
    means, paired, grouped = aggregate(runs), paired_differences(runs), by_model(runs)
    models = [m for m in MODEL_ORDER if m in grouped]
    # DSB mAP is a fraction: shown ×100 beside the percentages.
    scale = {k: (100.0 if k == "dsb_map" else 1.0) for k, *_ in METRICS}
    labels = [label + (" ×100" if scale[k] != 1 else "") for k, label, *_ in METRICS]
    fig, (ax_abs, ax_diff, ax_cost) = plt.subplots(
        1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [5, 5, 3]})
    width = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(METRICS))]
        heights = [(means[m][k][0] or 0) * scale[k] for k, *_ in METRICS]
        stds = [(means[m][k][1] or 0) * scale[k] for k, *_ in METRICS]
        ax_abs.bar(xs, heights, width, yerr=stds, capsize=3, label=f"{grouped[m][0]['model_name']} (n={len(grouped[m])})")
        for x, (k, *_) in zip(xs, METRICS):
            points = [metric_value(r, k) for r in grouped[m]]
            points = [p * scale[k] for p in points if p is not None]
            ax_abs.plot([x] * len(points), points, "k.", markersize=4)
    ax_abs.set_xticks(range(len(METRICS)), labels, rotation=20)
    ax_abs.set_title("mean ± std over seeds (dots: seeds)")
    ax_abs.legend(fontsize=8)
    for i, (k, *_) in enumerate(METRICS):
        p = paired[k]
        if p["mean"] is not None:
            ax_diff.bar(i, p["mean"] * scale[k], 0.6, yerr=(p["std"] or 0) * scale[k], capsize=3,
                        color="tab:green" if p["mean"] > 0 else "tab:red")
            ax_diff.plot([i] * len(p["diffs"]), [d * scale[k] for d in p["diffs"]], "k.", markersize=4)
    ax_diff.axhline(0, color="grey", linewidth=0.8)
    ax_diff.set_xlim(-0.6, len(METRICS) - 0.4)
    ax_diff.set_ylabel("points (dots: seeds)")
    ax_diff.set_xticks(range(len(METRICS)), labels, rotation=20)
    ax_diff.set_title(f"nested − FPN, paired by seed ({len(paired['fg_iou']['diffs'])} pairs)")
    if all(m in grouped for m in MODEL_ORDER):
        fpn, nested = (cost_row(grouped[m], model_cost(costs, m)) for m in MODEL_ORDER)
        change = [100 * (nested[k] / fpn[k] - 1) if nested[k] and fpn[k] else 0 for k in COST_LABELS]
        ax_cost.bar(range(len(change)), change,
                    color=["tab:red" if c > 0 else "tab:green" for c in change])
    ax_cost.axhline(0, color="grey", linewidth=0.8)
    ax_cost.set_xticks(range(len(COST_LABELS)), list(COST_LABELS.values()), fontsize=8)
    ax_cost.set_ylabel("nested vs FPN (%)")
    ax_cost.set_title("cost")
    fig.suptitle(f"Mask R-CNN vs Mask R-CNN++, DSB2018 test, profile {profile_name}")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
