"""One profile's report: results_dir/nuclei_instance_<profile>.md (and its chart), from the run
records alone."""
import os
import statistics
from collections import defaultdict

from ..measure import publish
from ..records import MODEL_ORDER, load_costs, load_nuclei_runs, load_profile_runs, nuclei_runs_dir
from ..stats import mean_std
from ..tables import fmt, relative, table
from .chart import render_chart
from .metrics import (
    COST_KEYS, FAILED_ESTIMATE, HEADLINE, METRICS, TIME_KEYS, aggregate, breakdown, by_model, cost_row,
    diameter_errors, failed_estimates_percent, field_value, has_diameters, iterations_text, mean_of,
    model_cost, model_names, modality_group, models_of, paired_difference, paired_differences,
    paired_where_estimates_hold, relative_error, size_group, timed_on_same_cpus, verdict,
)

OBJECT_SIZES = (("APs", "small: area < 32² px"), ("APm", "medium: 32²–96² px"), ("APl", "large: > 96² px"))


def write_report(profile_name, profile, results_dir):
    """Render the profile's markdown and PNG from its run records; returns the markdown's path."""
    runs = load_profile_runs(results_dir, profile_name, profile.fpn_runs_from)
    costs = load_costs(nuclei_runs_dir(results_dir, profile_name))
    baseline = load_nuclei_runs(nuclei_runs_dir(results_dir, profile.baseline)) if profile.baseline else None
    stem = os.path.join(results_dir, f"nuclei_instance_{profile_name}")
    text = render_markdown(profile_name, profile, runs, costs, baseline)
    if runs:
        render_chart(profile_name, runs, stem + ".png", costs)
    publish(text, stem + ".md")
    return stem + ".md"


def render_markdown(profile_name, profile, runs, costs=None, baseline_runs=None):
    lines = header_section(profile_name, profile, runs)
    if not runs:
        return "\n".join(lines + ["No finished runs yet.", ""])
    models = models_of(runs)
    lines += results_table(runs, costs)
    lines += per_seed_section(paired_differences(runs))
    lines += ["", "Does Mask R-CNN++ beat Mask R-CNN by more than the seed-to-seed spread?", ""]
    lines += [f"- {label}: {verdict(runs, key)}" for key, label, *_ in METRICS if key in HEADLINE]
    lines += object_size_section(runs, models)
    lines += breakdown_section("modality", runs, modality_group, models)
    lines += breakdown_section("image size (height × width)", runs, size_group, models)
    lines += scale_section(runs, models)
    lines += baseline_section(runs, profile.baseline, baseline_runs, models)
    lines += ["", f"![chart](nuclei_instance_{profile_name}.png)"]
    lines += method_section(profile_name, profile, runs, costs)
    return "\n".join(lines)


def header_section(profile_name, profile, runs):
    configs = dict(profile.configs, **{r["model"]: r["config"] for r in runs})  # what the runs trained
    return [
        f"# Mask R-CNN vs Mask R-CNN++ on DSB2018 nuclei — profile `{profile_name}`",
        "",
        f"Setting: {profile.description}. Both models use identical data, schedule, augmentation "
        f"and seeds; only the backbone's neck differs (`{configs['fpn']}` vs "
        f"`{configs['nested']}`). Mean ± sample std over seeds. fg IoU / Dice: per-image "
        "mean, percent; DSB mAP: fraction; segm AP/AP50: COCO, percent.",
        "",
    ]


def results_table(runs, costs):
    """One row per model (metrics and costs), then the paired nested − FPN row."""
    grouped, names, means, paired = by_model(runs), model_names(runs), aggregate(runs), paired_differences(runs)
    head = ["model", "runs"] + [m[1] for m in METRICS] + [
        "params (M)", "GFLOPs backbone+neck", "GFLOPs whole", "train s/iter wall", "train CPU s/iter",
        "inference img/s", "inference CPU s/img"]
    rows = []
    for m in models_of(runs):
        c = cost_row(grouped[m], model_cost(costs, m))
        rows.append([names[m], len(grouped[m])] + [fmt(*means[m][k][:2], d) for k, _, _, d in METRICS] + [
            f"{c['params_m']:.2f}", fmt(c["gmacs_backbone"], decimals=1), fmt(c["gmacs_whole"], decimals=1),
            fmt(c["train_wall"]), fmt(c["train_cpu"]), fmt(c["infer_ips"]), fmt(c["infer_cpu"])])
    cost_cells = [""] * 7
    if all(m in grouped for m in MODEL_ORDER):
        fpn, nested = (cost_row(grouped[m], model_cost(costs, m)) for m in MODEL_ORDER)
        same_cpus = timed_on_same_cpus(grouped)
        cost_cells = [relative(nested[k], fpn[k]) if same_cpus or k not in TIME_KEYS else "different CPUs"
                      for k in COST_KEYS]
    rows.append(["nested − FPN (paired by seed; cost columns: nested vs FPN)",
                 f"{len(paired['fg_iou']['diffs'])} pairs"]
                + [fmt(paired[k]["mean"], paired[k]["std"], d, sign=True) for k, _, _, d in METRICS] + cost_cells)
    return table(head, rows, "l" * (2 + len(METRICS)) + "r" * 7)


def per_seed_section(paired):
    lines = ["", "Per-seed paired differences (nested − FPN):", ""]
    for k, label, _, d in METRICS:
        per_seed = ", ".join(f"seed {s}: {v:+.{d}f}" for s, v in zip(paired[k]["seeds"], paired[k]["diffs"]))
        lines.append(f"- {label}: {per_seed or 'no paired seeds yet'}")
    return lines


def object_size_section(runs, models):
    """COCO segm AP by nucleus area (at the image's original resolution), per model and paired."""
    grouped = by_model(runs)
    rows = []
    for field, label in OBJECT_SIZES:
        def value(run):
            return field_value(run, "segm", field)
        diff = paired_difference(runs, value)
        rows.append([label] + [fmt(*mean_std([value(r) for r in grouped[m]])) for m in models]
                    + [fmt(diff["mean"], diff["std"], sign=True)])
    head = ["nucleus size"] + [grouped[m][0]["model_name"] for m in models] + ["nested − FPN (paired)"]
    return ["", "### COCO segm AP by nucleus size", "",
            "Mean ± std over seeds; an empty cell: no nuclei of that size in the test set.", ""] + table(
        head, rows, "l" + "r" * (len(models) + 1))


def breakdown_section(title, runs, group_of, models):
    rows = []
    for row in breakdown(runs, group_of):
        rows.append([row["group"], row["images"]]
                    + [fmt(row[(m, "fg_iou")]) for m in models] + [fmt(row[("diff", "fg_iou")], sign=True)]
                    + [fmt(row[(m, "dsb_map")], decimals=3) for m in models]
                    + [fmt(row[("diff", "dsb_map")], decimals=3, sign=True)])
    head = (["group", "test images"] + [f"fg IoU {m}" for m in models] + ["fg IoU nested − FPN"]
            + [f"DSB mAP {m}" for m in models] + ["DSB mAP nested − FPN"])
    return ["", f"### Per-image results by {title}", "",
            "Mean over runs of the per-image mean within each group.", ""] + table(
        head, rows, "lr" + "r" * (2 * len(models) + 2))


def estimates_hold_line(runs, images_per_run):
    """One line: the paired difference on the images where neither model's estimate failed."""
    held = paired_where_estimates_hold(runs)
    if not held["seeds"]:
        return []
    cells = []
    for key, label, d in (("fg_iou", "fg IoU", 2), ("dsb_map", "DSB mAP", 3)):
        per_seed = ", ".join(f"{v:+.{d}f}" for v in held[key])
        cells.append(f"{label} {fmt(*mean_std(held[key]), decimals=d, sign=True)} ({per_seed})")
    low, high = min(held["images"]), max(held["images"])
    kept = f"{low}" if low == high else f"{low}–{high}"
    return ["", f"Where neither model's estimate is off by more than {FAILED_ESTIMATE:g}x ({kept} of the "
            f"{images_per_run} images per seed; seeds {', '.join(map(str, held['seeds']))}), "
            f"nested − FPN over those images: " + "; ".join(cells) + "."]


def scale_section(runs, models):
    """Diameter-policy runs: metrics at the estimated diameter beside the oracle (annotated) one,
    the estimator's median relative error and failures, overall and per image size, and the
    paired difference where neither model's estimate failed."""
    scaled = [r for r in runs if r.get("oracle_scale_metrics")]
    if not scaled:
        return []
    grouped, names = by_model(scaled), model_names(scaled)
    rows = []
    for m in (m for m in models if m in grouped):
        rs = grouped[m]
        cells = []
        for key, d in (("fg_iou", 2), ("dsb_map", 3)):
            cells += [fmt(*mean_std([r["metrics"]["nuclei"][key] for r in rs]), decimals=d),
                      fmt(*mean_std([r["oracle_scale_metrics"][key] for r in rs]), decimals=d)]
        errors = [100 * statistics.median(diameter_errors(r)) for r in rs if diameter_errors(r)]
        failed = [p for p in map(failed_estimates_percent, rs) if p is not None]
        rows.append([names[m], len(rs)] + cells + [fmt(*mean_std(errors)), fmt(*mean_std(failed), decimals=1)])
    head = ["model", "runs", "fg IoU estimated", "fg IoU oracle", "DSB mAP estimated", "DSB mAP oracle",
            "diameter error, median over images (%)",
            f"images with the estimate off by > {FAILED_ESTIMATE:g}x (%)"]
    lines = ["", "## Scale: estimated diameter vs the annotated one (oracle, an upper bound)", ""]
    lines += table(head, rows, "ll" + "r" * 6)
    lines += estimates_hold_line(scaled, max(len(r.get("per_image", [])) for r in scaled))
    lines += ["", "Diameter estimate per image size (median relative error, %, pooled over runs):", ""]
    sizes = defaultdict(list)
    for r in scaled:
        for i in r["per_image"]:
            if has_diameters(i):
                sizes[size_group(i)].append(relative_error(i))
    for group in sorted(sizes, key=lambda g: -len(sizes[g])):
        lines.append(f"- {group}: {100 * statistics.median(sizes[group]):.1f} ({len(sizes[group])} images)")
    return lines


def baseline_section(runs, baseline_name, baseline_runs, models):
    """This profile's results beside another's (e.g. the same schedule under another scale policy):
    overall, then per modality and per image size, mean over runs."""
    if not baseline_runs:
        return []
    names = model_names(runs)

    def cells(old_rows, new_rows):
        return [f"{fmt(old_rows.get((m, key)), decimals=d)} → {fmt(new_rows.get((m, key)), decimals=d)}"
                for m in models for key, d in (("fg_iou", 2), ("dsb_map", 3))]

    def overall(rs):
        return {(m, key): mean_std([r["metrics"]["nuclei"][key] for r in rs if r["model"] == m])[0]
                for m in models for key in ("fg_iou", "dsb_map")}

    rows = [["all", len(runs[0].get("per_image", []))] + cells(overall(baseline_runs), overall(runs))]
    for title, group_of in (("modality", modality_group), ("size", size_group)):
        old = {row["group"]: row for row in breakdown(baseline_runs, group_of)}
        rows += [[f"{title} {row['group']}", row["images"]] + cells(old.get(row["group"], {}), row)
                 for row in breakdown(runs, group_of)]

    def cpu_per_image(rs, m):
        return mean_of([r for r in rs if r["model"] == m], lambda r: r["inference_timing"]["cpu_s_per_image"])

    infer = [f"{names[m]} {fmt(cpu_per_image(baseline_runs, m))} → {fmt(cpu_per_image(runs, m))}" for m in models]
    head = ["group", "images"] + [f"{metric} {names[m]}" for m in models for metric in ("fg IoU", "DSB mAP")]
    return (["", f"## Beside `{baseline_name}`", "",
             f"Each cell: `{baseline_name}` → this profile (mean over seeds; fg IoU %, DSB mAP).", ""]
            + table(head, rows, "lr" + "r" * (2 * len(models)))
            + ["", "Inference CPU s per test image: " + "; ".join(infer) + "."])


def machine_lines(runs, names):
    """One machine line, or one per model when the models' runs were timed on different CPUs."""
    grouped = by_model(runs)
    if timed_on_same_cpus(grouped):
        return [f"- machine: {'; '.join(sorted({r['machine'] for r in runs}))}"]
    lines = [f"- machine, {names[m]}: {'; '.join(sorted({r['machine'] for r in grouped[m]}))}"
             for m in MODEL_ORDER if m in grouped]
    return lines + ["- the models were timed on different CPUs: their time columns compare the machines "
                    "as much as the models"]


def method_section(profile_name, profile, runs, costs):
    """"How these numbers were made": commands, machine, runs, schedule, what the costs count."""
    grouped, names, models = by_model(runs), model_names(runs), models_of(runs)
    planned = ", ".join(str(s) for s in profile.seeds)
    finished = ", ".join(f"{names[m]} {len(grouped[m])} ({'seeds ' + ', '.join(str(r['seed']) for r in grouped[m])})"
                         for m in models)
    first = runs[0]
    iterations = (iterations_text(runs) if len({r["max_iter"] for r in runs}) == 1
                  else "; ".join(f"{names[m]} {iterations_text(grouped[m])}" for m in models))
    lines = [
        "",
        "## How these numbers were made",
        "",
        *sorted({f"- command: `{r['command']}`" for r in runs}),
        *machine_lines(runs, names),
        f"- finished runs per model: {finished}; the profile plans seeds {planned}, and `--seeds` "
        "adds others",
        f"- iterations per run: {iterations}, batch {first['ims_per_batch']}; "
        f"test set `{first['test_set']}` ({first['metrics'].get('nuclei', {}).get('num_images')} images)",
        f"- git commit: {', '.join(sorted({r['git_commit'] for r in runs}))}",
        f"- dates: {min(r['date'] for r in runs)} – {max(r['date'] for r in runs)}",
        gflops_line(profile, costs),
        "- training time: wall and CPU seconds of the training process per iteration (CPU: all its "
        "threads, not the data-loader workers); inference: model forward only, per test image, after "
        "two warm-up images",
    ]
    lines += resumed_lines(runs, names)
    if profile.timed and first["machine"].find("GPU") < 0:
        lines.append(load_line(runs))
    if not profile.timed:
        lines.append("- this profile's schedule was planned, not timed, on its target machine")
    lines += [f"- per-run JSON: `nuclei_runs/{profile_name}/<model>_seed<k>.json`", ""]
    return lines


def gflops_line(profile, costs):
    counted = (
        "from `costs.json`: freshly built models, the whole model with its heads run on "
        + " / ".join(str(costs["models"][m]["detections"]) for m in MODEL_ORDER if m in costs["models"])
        + " (FPN / nested) detections (score threshold 0), so independent of training"
        if costs else
        "the whole model's count is the trained model's on the first test image (resized), so it "
        "depends on how many nuclei that model detects")
    return ("- GFLOPs: fvcore's count, which calls one multiply-accumulate one flop (roi_align and nms "
            f"left out), on a {profile.test_size}×{profile.test_size} input; " + counted)


def resumed_lines(runs, names):
    resumed = [r for r in runs if (r.get("train_timing") or {}).get("iterations_timed", r["max_iter"]) < r["max_iter"]]
    if not resumed:
        return []
    return ["- resumed after their process was killed (`--resume` semantics: from the last "
            "checkpoint, so not bit-identical to an uninterrupted run; timed over the resumed "
            "iterations only): " + ", ".join(
                f"{names[r['model']]} seed {r['seed']} ({r['train_timing']['iterations_timed']} "
                "iterations timed)" for r in resumed)]


def load_line(runs):
    loads = [v for r in runs for v in (r.get("loadavg_at_end") or [])[:1]]
    return (f"- load: the 1-minute load average at the end of the runs was {min(loads):.1f}–"
            f"{max(loads):.1f} (cores: see the machine line); two comparison processes may share "
            "a plan (each run is locked while it runs), so a seed's FPN and nested runs can "
            "overlap in time. Wall times depend on that load; CPU s/iter is the steadier figure")
