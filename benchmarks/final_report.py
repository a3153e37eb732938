"""The final Mask R-CNN vs Mask R-CNN++ table on dsb2018_test (issue 15).

One row per (profile, model) of the table's spec (mean ± std over seeds, with the cost
columns), the nuclei peer's published row, then the decision: the paired nested − FPN
difference against the seed spread, the nested model's extra training and inference time
against the goals, and each model against the peer.
"""
import os

from comparison_report import (
    MODEL_ORDER,
    aggregate,
    by_model,
    cost_row,
    cpu_models,
    fmt,
    iterations_text,
    load_profile_runs,
    mean_of,
    paired_differences,
    relative,
    timed_on_same_cpus,
    verdict,
)
from maskrcnnpp.utils.json_io import atomic_write

# key, label, decimals: the columns the peer is compared on (its published figures)
PEER_METRICS = (("fg_iou", "fg IoU (%)", 2), ("fg_dice", "fg Dice (%)", 2), ("dsb_map", "DSB mAP", 3))


def model_rows(label, profile_name, runs):
    """Table lines for one profile: a row per model, mean ± std over its seeds."""
    table = aggregate(runs)
    lines = []
    for model in (m for m in MODEL_ORDER if m in table):
        rs = by_model(runs)[model]
        c = cost_row(rs)
        metrics = [fmt(*table[model][key][:2], decimals=d) for key, _, d in PEER_METRICS]
        metrics.append(fmt(*table[model]["segm_ap"][:2], decimals=1))
        train_min = mean_of(rs, lambda r: r["train_timing"].get("wall_s", 0) / 60 or None)
        lines.append(
            f"| {label} | {rs[0]['model_name']} | `{profile_name}` | "
            + ", ".join(str(r["seed"]) for r in rs) + " | "
            + " | ".join(metrics)
            + f" | {c['params_m']:.2f} | {fmt(c['gmacs_backbone'], decimals=1)} | {iterations_text(rs)} "
            f"| {fmt(train_min, decimals=1)} | {fmt(c['train_cpu'])} | {fmt(c['infer_cpu'])} |"
        )
    return lines


def peer_row(peer):
    metrics = [fmt(peer[key], decimals=d) for key, _, d in PEER_METRICS]
    return (f"| {peer['label']} | {peer['name']} | – | – | " + " | ".join(metrics)
            + f" | – | – | – | – | {fmt(peer['train_min'], decimals=1)} | – | {fmt(peer['infer_s'])} |")


def cost_lines(runs, spec):
    """The nested model's extra training and inference time over FPN's, against the goals."""
    grouped = by_model(runs)
    if not all(m in grouped for m in MODEL_ORDER):
        return []
    if not timed_on_same_cpus(grouped):
        # different machines (or a mix) time the two models: a ratio would measure the machines
        fpn_cpus, nested_cpus = (" + ".join(cpu_models(grouped[m])) for m in MODEL_ORDER)
        return [f"- training and inference time: not comparable here, the FPN runs were timed on "
                f"{fpn_cpus} and the nested runs on {nested_cpus}"]
    fpn, nested = (cost_row(grouped[m]) for m in MODEL_ORDER)
    lines = []
    for key, name, limit in (("train_wall", "training wall s/iter", spec["max_extra_train"]),
                             ("infer_cpu", "inference CPU s/img", spec["max_extra_inference"])):
        if fpn[key] is None or nested[key] is None:
            lines.append(f"- {name}: not measured")
            continue
        extra = nested[key] / fpn[key] - 1
        ok = "within" if extra <= limit else "over"
        lines.append(f"- {name}: nested {relative(nested[key], fpn[key])} vs FPN "
                     f"({fmt(nested[key])} vs {fmt(fpn[key])}); {ok} the goal of +{100 * limit:.0f} %")
    return lines


def peer_lines(runs_by_profile, spec):
    """Each model of each profile against the peer's published figures."""
    peer, lines = spec["peer"], []
    for label, profile_name in spec["rows"]:
        table = aggregate(runs_by_profile[profile_name])
        for model in (m for m in MODEL_ORDER if m in table):
            parts = []
            for key, name, d in PEER_METRICS:
                mean = table[model][key][0]
                if mean is not None:
                    parts.append(f"{name} {mean - peer[key]:+.{d}f}")
            verdicts = [table[model][k][0] is not None and table[model][k][0] > peer[k] for k, _, _ in PEER_METRICS]
            word = "beats it on all three" if all(verdicts) else "does not beat it on all three"
            lines.append(f"- {label}, {by_model(runs_by_profile[profile_name])[model][0]['model_name']}: "
                         + ", ".join(parts) + f" vs {peer['name']}; {word}")
    return lines


def render_final(spec, results_dir, profiles=None):
    """The final table (``spec``: comparison_profiles.FINAL) from the run JSONs; returns its text.

    ``profiles`` (name -> Profile) tells which rows take their FPN runs from another profile."""
    profiles = profiles or {}
    runs_by_profile = {p: load_profile_runs(results_dir, p, profiles.get(p)) for _, p in spec["rows"]}
    numeric = [n for _, n, _ in PEER_METRICS] + [
        "segm AP", "params (M)", "GFLOPs backbone+neck", "iterations", "train wall (min)",
        "train CPU s/iter", "inference CPU s/img"]
    lines = [f"# {spec['title']}", "", spec["note"], "",
             "| row | model | profile | seeds | " + " | ".join(numeric) + " |",
             "| --- | --- | --- | --- |" + " ---: |" * len(numeric)]
    for label, profile_name in spec["rows"]:
        lines += model_rows(label, profile_name, runs_by_profile[profile_name])
    lines.append(peer_row(spec["peer"]))
    lines += ["", f"The peer's row: {spec['peer']['source']}", ""]
    missing = [f"{label}, `{p}`" for label, p in spec["rows"] if not runs_by_profile[p]]
    if missing:
        lines += [f"Not run yet: {'; '.join(missing)}.", ""]

    pair_runs = runs_by_profile[spec["pair"]]
    paired = paired_differences(pair_runs)
    table = aggregate(pair_runs)
    lines += [f"## Decision (`{spec['pair']}`, paired by seed)", ""]
    if all(m in table for m in MODEL_ORDER):
        for key, name, d in PEER_METRICS[:1] + PEER_METRICS[2:]:
            p = paired[key]
            per_seed = ", ".join(f"seed {s} {v:+.{d}f}" for s, v in zip(p["seeds"], p["diffs"]))
            lines.append(f"- {name}, nested − FPN: {per_seed or 'no paired seeds'}; "
                         f"beats by more than the spread? {verdict(table, paired, key)}")
    else:
        lines.append("- not both models run yet")
    lines += cost_lines(pair_runs, spec)
    lines += ["", f"Against {spec['peer']['name']} (mean over seeds minus the peer's figure):", ""]
    lines += peer_lines(runs_by_profile, spec)
    commands = sorted({r["command"] for rs in runs_by_profile.values() for r in rs})
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in commands] + [""]
    text = "\n".join(lines)
    with atomic_write(os.path.join(results_dir, spec["file"]), encoding="utf-8") as f:
        f.write(text)
    return text
