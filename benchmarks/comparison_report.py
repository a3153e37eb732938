"""Aggregate the FPN vs nested-FPN run JSONs into a markdown table and a PNG chart."""
import glob
import json
import math
import os
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from maskrcnnpp.utils.json_io import atomic_write  # noqa: E402

MODEL_ORDER = ("fpn", "nested")
# key, label, (results section, field), decimals
METRICS = (
    ("fg_iou", "fg IoU (%)", ("nuclei", "fg_iou"), 2),
    ("fg_dice", "fg Dice (%)", ("nuclei", "fg_dice"), 2),
    ("dsb_map", "DSB mAP", ("nuclei", "dsb_map"), 3),
    ("segm_ap", "segm AP", ("segm", "AP"), 2),
    ("segm_ap50", "segm AP50", ("segm", "AP50"), 2),
)
HEADLINE = ("fg_iou", "dsb_map")  # what Mask R-CNN++ should win by more than the spread
# An image predicted at a diameter this many times off its annotated one (either way) counts as a
# failed estimate: the detector was trained on nuclei within 0.8-1.25x of its working diameter.
FAILED_ESTIMATE = 1.5


def load_runs(runs_dir):
    runs = []
    for path in sorted(glob.glob(os.path.join(runs_dir, "*_seed*.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return in_report_order(runs)


def in_report_order(runs):
    return sorted(runs, key=lambda r: (MODEL_ORDER.index(r["model"]), r["seed"]))


def with_shared_fpn_runs(runs, fpn_runs_dir):
    """``runs`` with their FPN runs replaced by those in ``fpn_runs_dir`` (a profile whose FPN
    runs another shares); ``runs`` as they are when ``fpn_runs_dir`` is None."""
    if not fpn_runs_dir:
        return runs
    shared = [r for r in load_runs(fpn_runs_dir) if r["model"] == "fpn"]
    return in_report_order([r for r in runs if r["model"] != "fpn"] + shared)


def load_profile_runs(results_dir, profile_name, profile=None):
    """A profile's runs under ``results_dir``, with the FPN runs of the profile it shares them with."""
    runs_dir = os.path.join(results_dir, "nuclei_runs")
    shared = os.path.join(runs_dir, profile.fpn_runs_from) if profile and profile.fpn_runs_from else None
    return with_shared_fpn_runs(load_runs(os.path.join(runs_dir, profile_name)), shared)


def field_value(run, section, field):
    """``run["metrics"][section][field]``; None when absent or NaN (COCO's "no objects of that size")."""
    value = run["metrics"].get(section, {}).get(field)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def metric_value(run, key):
    return field_value(run, *next(m[2] for m in METRICS if m[0] == key))


def mean_std(values):
    """Mean and sample standard deviation (n - 1) of the values that are not None; std is None
    below two values, both are None with none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def seed_spread(diffs, *rows):
    """The spread a paired difference must exceed: the largest of the differences' std and
    each row's std over the same seeds (an undefined std counts as 0)."""
    return max([mean_std(diffs)[1] or 0.0] + [mean_std(row)[1] or 0.0 for row in rows])


def by_model(runs):
    grouped = defaultdict(list)
    for r in runs:
        grouped[r["model"]].append(r)
    return grouped


def aggregate(runs):
    """{model: {metric: (mean, std, n)}} over seeds."""
    table = {}
    for model, model_runs in by_model(runs).items():
        table[model] = {}
        for key, *_ in METRICS:
            values = [metric_value(r, key) for r in model_runs]
            table[model][key] = (*mean_std(values), sum(v is not None for v in values))
    return table


def paired_difference(runs, value_of):
    """{"seeds", "diffs", "mean", "std"}: nested minus FPN of ``value_of(run)`` for every seed both
    finished with a value."""
    seeds = {m: {r["seed"]: r for r in rs} for m, rs in by_model(runs).items()}
    common = sorted(set(seeds.get("fpn", {})) & set(seeds.get("nested", {})))
    pairs = [(s, value_of(seeds["nested"][s]), value_of(seeds["fpn"][s])) for s in common]
    pairs = [(s, n - f) for s, n, f in pairs if n is not None and f is not None]
    mean, std = mean_std([d for _, d in pairs])
    return {"seeds": [s for s, _ in pairs], "diffs": [d for _, d in pairs], "mean": mean, "std": std}


def paired_differences(runs):
    """{metric: paired_difference} for every metric of the table."""
    return {key: paired_difference(runs, lambda r, key=key: metric_value(r, key)) for key, *_ in METRICS}


def verdict(table, paired, key):
    """Whether the nested FPN wins ``key`` by more than the seed-to-seed spread, in words."""
    p = paired[key]
    if len(p["diffs"]) < 2:
        return f"too few paired runs ({len(p['diffs'])}) to compare with the seed-to-seed spread"
    spread = max(p["std"], *(table[m][key][1] or 0.0 for m in MODEL_ORDER))
    if p["mean"] > spread:
        return (f"yes: mean paired difference {p['mean']:+.4g} > spread {spread:.4g} "
                f"(largest of the paired-difference std and each model's seed std)")
    return (f"no: mean paired difference {p['mean']:+.4g} is not above the spread {spread:.4g} "
            f"(largest of the paired-difference std and each model's seed std)")


def size_group(record):
    return f"{record.get('height')}×{record.get('width')}"


def breakdown(runs, group_of):
    """Per group of test images: images, and per model mean fg IoU / DSB mAP (mean over runs of
    the per-image mean in the group), plus the paired nested − FPN difference of each."""
    groups = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    counts = {}
    for r in runs:
        per_group = defaultdict(list)
        for image in r.get("per_image", []):
            per_group[group_of(image)].append(image)
        for g, images in per_group.items():
            counts[g] = len(images)
            for key in ("fg_iou", "dsb_map"):
                values = [i[key] for i in images if i.get(key) is not None]
                if values:
                    groups[g][key][(r["model"], r["seed"])] = sum(values) / len(values)
    rows = []
    for g in sorted(groups, key=lambda g: (-counts[g], g)):
        row = {"group": g, "images": counts[g]}
        for key in ("fg_iou", "dsb_map"):
            cell = groups[g][key]
            for m in MODEL_ORDER:
                row[(m, key)] = mean_std([v for (mm, _), v in cell.items() if mm == m])[0]
            seeds = {s for (mm, s) in cell if mm == "fpn"} & {s for (mm, s) in cell if mm == "nested"}
            row[("diff", key)] = mean_std([cell[("nested", s)] - cell[("fpn", s)] for s in seeds])[0]
        rows.append(row)
    return rows


def fmt(mean, std=None, decimals=2, sign=False):
    if mean is None:
        return "–"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" ± {std:.{decimals}f}" if std is not None else "")


def mean_of(runs, getter):
    values = [getter(r) for r in runs]
    return mean_std([v for v in values if v is not None])[0]


def cost_row(model_runs, model_cost=None):
    """Cost columns; with ``model_cost`` (costs.json) the size-only figures come from there."""
    first = model_runs[0]
    fixed = {"params_m": first["parameters"] / 1e6,
             "gmacs_backbone": first["gflops"]["backbone_and_neck"],
             "gmacs_whole": mean_of(model_runs, lambda r: r["gflops"]["whole_model"])}
    if model_cost:
        fixed = {"params_m": model_cost["parameters"] / 1e6,
                 "gmacs_backbone": model_cost["gflops_backbone_and_neck"],
                 "gmacs_whole": model_cost["gflops_whole"]}
    return {
        **fixed,
        "train_wall": mean_of(model_runs, lambda r: r["train_timing"]["wall_s_per_iter"]),
        "train_cpu": mean_of(model_runs, lambda r: r["train_timing"]["cpu_s_per_iter"]),
        "infer_ips": mean_of(model_runs, lambda r: r["inference_timing"]["images_per_s"]),
        "infer_cpu": mean_of(model_runs, lambda r: r["inference_timing"]["cpu_s_per_image"]),
    }


SIZE_KEYS = ("params_m", "gmacs_backbone", "gmacs_whole")
TIME_KEYS = ("train_wall", "train_cpu", "infer_ips", "infer_cpu")  # measured, so machine-dependent
COST_KEYS = SIZE_KEYS + TIME_KEYS


def relative(value, base):
    if value is None or not base:
        return "–"
    return f"{100 * (value / base - 1):+.1f} %"


def load_costs(runs_dir):
    path = os.path.join(runs_dir, "costs.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def model_cost(costs, model):
    return (costs or {}).get("models", {}).get(model)


def baseline_section(runs, baseline_name, baseline_runs, models):
    """This profile's results beside another's (e.g. the same schedule under the old scale policy):
    overall, then per modality and per image size, mean over runs."""
    if not baseline_runs:
        return []
    names = model_names(runs)
    lines = ["", f"## Beside `{baseline_name}`", "",
             f"Each cell: `{baseline_name}` → this profile (mean over seeds; fg IoU %, DSB mAP).", "",
             "| group | images | " + " | ".join(f"fg IoU {names[m]} | DSB mAP {names[m]}" for m in models) + " |",
             "| --- | ---: |" + " ---: |" * (2 * len(models))]

    def cells(old_rows, new_rows, images):
        out = []
        for m in models:
            for key, decimals in (("fg_iou", 2), ("dsb_map", 3)):
                old, new = old_rows.get((m, key)), new_rows.get((m, key))
                out.append(f"{fmt(old, decimals=decimals)} → {fmt(new, decimals=decimals)}")
        return f" | {images} | " + " | ".join(out) + " |"

    def overall(rs):
        return {(m, key): mean_std([r["metrics"]["nuclei"][key] for r in rs if r["model"] == m])[0]
                for m in models for key in ("fg_iou", "dsb_map")}

    lines.append("| all" + cells(overall(baseline_runs), overall(runs), len(runs[0].get("per_image", []))))
    for title, group_of in (("modality", lambda i: i.get("modality") or "unknown"), ("size", size_group)):
        old = {row["group"]: row for row in breakdown(baseline_runs, group_of)}
        for row in breakdown(runs, group_of):
            lines.append(f"| {title} {row['group']}" + cells(old.get(row["group"], {}), row, row["images"]))
    def cpu_per_image(rs, m):
        return mean_of([r for r in rs if r["model"] == m], lambda r: r["inference_timing"]["cpu_s_per_image"])

    infer = [f"{names[m]} {fmt(cpu_per_image(baseline_runs, m))} → {fmt(cpu_per_image(runs, m))}" for m in models]
    lines += ["", "Inference CPU s per test image: " + "; ".join(infer) + "."]
    return lines


def render_markdown(profile_name, profile, runs, command, costs=None, baseline_runs=None):
    lines = header_section(profile_name, profile, runs)
    if not runs:
        return "\n".join(lines + ["No finished runs yet.", ""])
    table, paired = aggregate(runs), paired_differences(runs)
    models = [m for m in MODEL_ORDER if m in by_model(runs)]
    lines += results_table(runs, table, paired, costs)
    lines += per_seed_section(paired)
    lines += verdict_section(table, paired)
    lines += object_size_section(runs, models)
    lines += breakdown_section("modality", runs, lambda i: i.get("modality") or "unknown", models)
    lines += breakdown_section("image size (height × width)", runs, size_group, models)
    lines += scale_section(runs, models)
    lines += baseline_section(runs, profile.baseline, baseline_runs, models)
    lines += method_section(profile_name, profile, runs, command, costs)
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


def results_table(runs, table, paired, costs):
    """One row per model (metrics and costs), then the paired nested − FPN row."""
    grouped = by_model(runs)
    names = model_names(runs)
    head = "| model | runs | " + " | ".join(m[1] for m in METRICS)
    head += " | params (M) | GFLOPs backbone+neck | GFLOPs whole | train s/iter wall | train CPU s/iter " \
            "| inference img/s | inference CPU s/img |"
    lines = [head, "|" + " --- |" * (2 + len(METRICS)) + " ---: |" * 7]
    for m in (m for m in MODEL_ORDER if m in grouped):
        cells = [fmt(table[m][k][0], table[m][k][1], d) for k, _, _, d in METRICS]
        c = cost_row(grouped[m], model_cost(costs, m))
        cells += [f"{c['params_m']:.2f}", fmt(c["gmacs_backbone"], decimals=1),
                  fmt(c["gmacs_whole"], decimals=1), fmt(c["train_wall"]), fmt(c["train_cpu"]),
                  fmt(c["infer_ips"]), fmt(c["infer_cpu"])]
        lines.append(f"| {names[m]} | {len(grouped[m])} | " + " | ".join(cells) + " |")
    n_pairs = len(paired["fg_iou"]["diffs"])
    diff_cells = [fmt(paired[k]["mean"], paired[k]["std"], d, sign=True) for k, _, _, d in METRICS]
    cost_cells = [""] * 7
    if all(m in grouped for m in MODEL_ORDER):
        fpn = cost_row(grouped["fpn"], model_cost(costs, "fpn"))
        nested = cost_row(grouped["nested"], model_cost(costs, "nested"))
        same_cpus = timed_on_same_cpus(grouped)
        cost_cells = [relative(nested[k], fpn[k]) if same_cpus or k not in TIME_KEYS else "different CPUs"
                      for k in COST_KEYS]
    lines.append(f"| nested − FPN (paired by seed; cost columns: nested vs FPN) | {n_pairs} pairs | "
                 + " | ".join(diff_cells + cost_cells) + " |")
    return lines


def per_seed_section(paired):
    lines = ["", "Per-seed paired differences (nested − FPN):", ""]
    for k, label, _, d in METRICS:
        per_seed = ", ".join(f"seed {s}: {v:+.{d}f}" for s, v in zip(paired[k]["seeds"], paired[k]["diffs"]))
        lines.append(f"- {label}: {per_seed or 'no paired seeds yet'}")
    return lines


def verdict_section(table, paired):
    labels = {key: label for key, label, *_ in METRICS}
    return (["", "Does Mask R-CNN++ beat Mask R-CNN by more than the seed-to-seed spread?", ""]
            + [f"- {labels[k]}: {verdict(table, paired, k)}" for k in HEADLINE])


def has_diameters(image):
    """Whether a per-image record has both the diameter it was predicted at and the annotated one."""
    return bool(image.get("diameter") and image.get("gt_diameter"))


def relative_error(image):
    """|diameter used - annotated| / annotated of a record with both diameters."""
    return abs(image["diameter"] - image["gt_diameter"]) / image["gt_diameter"]


def diameter_errors(run):
    """Relative errors of the diameters a run predicted at."""
    return [relative_error(i) for i in run.get("per_image", []) if has_diameters(i)]


def estimate_failed(image):
    """Whether an image was predicted at a diameter more than FAILED_ESTIMATE times off its annotated one."""
    if not has_diameters(image):
        return False
    used, annotated = image["diameter"], image["gt_diameter"]
    return max(used / annotated, annotated / used) > FAILED_ESTIMATE


def failed_estimates_percent(run):
    images = [i for i in run.get("per_image", []) if has_diameters(i)]
    return 100.0 * sum(map(estimate_failed, images)) / len(images) if images else None


def paired_where_estimates_hold(runs):
    """Nested − FPN per seed of the per-image mean fg IoU and DSB mAP over the images where
    neither model's estimate failed: {"seeds", "images", "fg_iou", "dsb_map"} (lists by seed)."""
    seeds = {m: {r["seed"]: r for r in rs} for m, rs in by_model(runs).items()}
    out = {"seeds": [], "images": [], "fg_iou": [], "dsb_map": []}
    for seed in sorted(set(seeds.get("fpn", {})) & set(seeds.get("nested", {}))):
        fpn, nested = ({i["image_id"]: i for i in seeds[m][seed]["per_image"]} for m in MODEL_ORDER)
        kept = [k for k in fpn if k in nested and all(
            has_diameters(im) and not estimate_failed(im) for im in (fpn[k], nested[k]))]
        if not kept:
            continue
        out["seeds"].append(seed)
        out["images"].append(len(kept))
        for key in ("fg_iou", "dsb_map"):
            out[key].append(statistics.fmean(nested[k][key] - fpn[k][key] for k in kept))
    return out


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
    lines = ["", "## Scale: estimated diameter vs the annotated one (oracle, an upper bound)", "",
             "| model | runs | fg IoU estimated | fg IoU oracle | DSB mAP estimated | DSB mAP oracle "
             f"| diameter error, median over images (%) | images with the estimate off by > {FAILED_ESTIMATE:g}x (%) |",
             "| --- | --- |" + " ---: |" * 6]
    for m in (m for m in models if m in grouped):
        rs = grouped[m]
        cells = [fmt(*mean_std([r["metrics"]["nuclei"][key] for r in rs]), decimals=d) + " / "
                 + fmt(*mean_std([r["oracle_scale_metrics"][key] for r in rs]), decimals=d)
                 for key, d in (("fg_iou", 2), ("dsb_map", 3))]
        error = fmt(*mean_std([100 * statistics.median(diameter_errors(r)) for r in rs if diameter_errors(r)]))
        failed = fmt(*mean_std([p for p in map(failed_estimates_percent, rs) if p is not None]), decimals=1)
        lines.append(f"| {names[m]} | {len(rs)} | " + " | ".join(c.replace(" / ", " | ") for c in cells)
                     + f" | {error} | {failed} |")
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


def model_names(runs):
    return {r["model"]: r["model_name"] for r in runs}


def cpu_models(model_runs):
    """The CPU models (the machine string up to its first comma) the runs were timed on."""
    return sorted({r["machine"].split(",")[0] for r in model_runs})


def timed_on_same_cpus(grouped):
    """Whether every model's runs (model -> runs) were timed on the same set of CPU models."""
    return len({tuple(cpu_models(rs)) for rs in grouped.values()}) <= 1


def machine_lines(runs, names):
    """One machine line, or one per model when the models' runs were timed on different CPUs."""
    grouped = by_model(runs)
    if timed_on_same_cpus(grouped):
        return [f"- machine: {'; '.join(sorted({r['machine'] for r in runs}))}"]
    lines = [f"- machine, {names[m]}: {'; '.join(sorted({r['machine'] for r in grouped[m]}))}"
             for m in MODEL_ORDER if m in grouped]
    return lines + ["- the models were timed on different CPUs: their time columns compare the machines "
                    "as much as the models"]


def iterations_text(model_runs):
    """The runs' iteration counts: one number when they agree, else each run's in the runs' order
    (a wall-clock budget gives each run the iterations its own speed probe allowed)."""
    counts = [r["max_iter"] for r in model_runs]
    return str(counts[0]) if len(set(counts)) == 1 else ", ".join(str(c) for c in counts)


def method_section(profile_name, profile, runs, command, costs):
    """"How these numbers were made": commands, machine, runs, schedule, what the costs count."""
    grouped, names = by_model(runs), model_names(runs)
    models = [m for m in MODEL_ORDER if m in grouped]
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
        *([f"- report rendered by: `{command}`"] if command not in {r["command"] for r in runs} else []),
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


OBJECT_SIZES = (("APs", "small: area < 32² px"), ("APm", "medium: 32²–96² px"), ("APl", "large: > 96² px"))


def object_size_section(runs, models):
    """COCO segm AP by nucleus area (at the image's original resolution), per model and paired."""
    grouped = by_model(runs)
    lines = ["", "### COCO segm AP by nucleus size", "",
             "Mean ± std over seeds; an empty cell: no nuclei of that size in the test set.", "",
             "| nucleus size | " + " | ".join(grouped[m][0]["model_name"] for m in models)
             + " | nested − FPN (paired) |", "| --- |" + " ---: |" * (len(models) + 1)]
    for field, label in OBJECT_SIZES:
        def value(run):
            return field_value(run, "segm", field)
        cells = [fmt(*mean_std([value(r) for r in grouped[m]])) for m in models]
        diff = paired_difference(runs, value)
        cells.append(fmt(diff["mean"], diff["std"], sign=True))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def breakdown_section(title, runs, group_of, models):
    rows = breakdown(runs, group_of)
    lines = ["", f"### Per-image results by {title}", "",
             "Mean over runs of the per-image mean within each group.", "",
             "| group | test images | " + " | ".join(f"fg IoU {m}" for m in models)
             + " | fg IoU nested − FPN | " + " | ".join(f"DSB mAP {m}" for m in models)
             + " | DSB mAP nested − FPN |",
             "| --- | ---: |" + " ---: |" * (2 * len(models) + 2)]
    for row in rows:
        cells = [fmt(row[(m, "fg_iou")]) for m in models] + [fmt(row[("diff", "fg_iou")], sign=True)]
        cells += [fmt(row[(m, "dsb_map")], decimals=3) for m in models]
        cells += [fmt(row[("diff", "dsb_map")], decimals=3, sign=True)]
        lines.append(f"| {row['group']} | {row['images']} | " + " | ".join(cells) + " |")
    return lines


def render_chart(profile_name, runs, path, costs=None):
    table, paired = aggregate(runs), paired_differences(runs)
    grouped = by_model(runs)
    models = [m for m in MODEL_ORDER if m in grouped]
    # DSB mAP is a fraction: shown ×100 beside the percentages.
    scale = {k: (100.0 if k == "dsb_map" else 1.0) for k, *_ in METRICS}
    labels = [label + (" ×100" if scale[k] != 1 else "") for k, label, *_ in METRICS]
    fig, (ax_abs, ax_diff, ax_cost) = plt.subplots(
        1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [5, 5, 3]})
    width = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(METRICS))]
        means = [(table[m][k][0] or 0) * scale[k] for k, *_ in METRICS]
        stds = [(table[m][k][1] or 0) * scale[k] for k, *_ in METRICS]
        ax_abs.bar(xs, means, width, yerr=stds, capsize=3, label=f"{grouped[m][0]['model_name']} (n={len(grouped[m])})")
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
    cost_labels = {"params_m": "params", "gmacs_backbone": "GFLOPs\nbackbone+neck",
                   "train_cpu": "train CPU\ns/iter", "infer_cpu": "inference\nCPU s/img"}
    if all(m in grouped for m in MODEL_ORDER):
        fpn = cost_row(grouped["fpn"], model_cost(costs, "fpn"))
        nested = cost_row(grouped["nested"], model_cost(costs, "nested"))
        change = [100 * (nested[k] / fpn[k] - 1) if nested[k] and fpn[k] else 0 for k in cost_labels]
        ax_cost.bar(range(len(change)), change,
                    color=["tab:red" if c > 0 else "tab:green" for c in change])
    ax_cost.axhline(0, color="grey", linewidth=0.8)
    ax_cost.set_xticks(range(len(cost_labels)), list(cost_labels.values()), fontsize=8)
    ax_cost.set_ylabel("nested vs FPN (%)")
    ax_cost.set_title("cost")
    fig.suptitle(f"Mask R-CNN vs Mask R-CNN++, DSB2018 test, profile {profile_name}")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_report(profile_name, profile, runs_dir, fpn_runs_dir, results_dir, command):
    """``fpn_runs_dir``: where the FPN runs live when this profile shares another's, else None."""
    runs, costs = with_shared_fpn_runs(load_runs(runs_dir), fpn_runs_dir), load_costs(runs_dir)
    baseline_runs = load_runs(os.path.join(results_dir, "nuclei_runs", profile.baseline)) if profile.baseline else None
    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, f"nuclei_instance_{profile_name}")
    text = render_markdown(profile_name, profile, runs, command, costs, baseline_runs)
    if runs:
        render_chart(profile_name, runs, stem + ".png", costs)
        text = text.replace("## How these numbers were made",
                            f"![chart](nuclei_instance_{profile_name}.png)\n\n## How these numbers were made")
    with atomic_write(stem + ".md", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return stem + ".md", stem + ".png"


def screen_row(profile_name, profile, runs):
    """One row per (profile, model) of a screen: its metrics and costs, mean ± std over seeds."""
    rows = []
    for model, rs in sorted(by_model(runs).items(), key=lambda kv: MODEL_ORDER.index(kv[0])):
        def stat(get, decimals=2):
            return fmt(*mean_std([get(r) for r in rs]), decimals=decimals)

        def group(size):
            values = [i["fg_iou"] for r in rs for i in r["per_image"] if size_group(i) == size]
            return fmt(statistics.fmean(values)) if values else "–"

        oracle = [r for r in rs if r.get("oracle_scale_metrics")]
        errors = [100 * statistics.median(diameter_errors(r)) for r in rs if diameter_errors(r)]
        rows.append(
            f"| `{profile_name}` | {rs[0]['model_name']} | {len(rs)} "
            f"| {stat(lambda r: r['metrics']['nuclei']['fg_iou'])} "
            f"| {stat(lambda r: r['metrics']['nuclei']['dsb_map'], 3)} "
            f"| {stat(lambda r: r['metrics'].get('segm', {}).get('AP'), 1)} "
            f"| {group('1024×1024')} | {group('360×360')} "
            f"| {stat(lambda r: r['oracle_scale_metrics']['fg_iou']) if oracle else '–'} "
            f"| {stat(lambda r: r['oracle_scale_metrics']['dsb_map'], 3) if oracle else '–'} "
            f"| {fmt(*mean_std(errors), decimals=1) if errors else '–'} "
            f"| {rs[0]['parameters'] / 1e6:.2f} | {fmt(rs[0]['gflops']['backbone_and_neck'], decimals=1)} "
            f"| {stat(lambda r: r['train_timing']['cpu_s_per_iter'])} "
            f"| {stat(lambda r: r['inference_timing']['cpu_s_per_image'])} "
            f"| {', '.join(sorted({r.get('git_commit', '?')[:7] for r in rs}))} "
            f"| {profile.description} |"
        )
    return rows


def render_screen(name, screen, profiles, results_dir):
    """The screen's table from the run JSONs of its profiles (profiles without runs: one line)."""
    lines = [f"# {screen['title']}", "",
             "One row per profile and model, mean ± std over its seeds; fg IoU (%), DSB mAP and "
             "segm AP (COCO, %) on the profile's test split; the 1024×1024 and 360×360 columns are "
             "the fg IoU of those val images; oracle: at each image's annotated diameter; diameter "
             "error: median relative error of the estimated diameter over the images; GFLOPs: "
             "fvcore's count (one multiply-accumulate = one flop) of the backbone and neck on the "
             "profile's square test input (256×256 for the R-18 profiles); commit: the code the run was evaluated with (the diameter estimate "
             "changed between commits).", "",
             "| profile | model | runs | fg IoU | DSB mAP | segm AP | fg IoU 1024×1024 | fg IoU 360×360 "
             "| fg IoU oracle | DSB mAP oracle | diameter error (%) | params (M) | GFLOPs backbone+neck "
             "| train CPU s/iter | inference CPU s/img | commit | setting |",
             "| --- | --- | ---: |" + " ---: |" * 12 + " --- | --- |"]
    missing, commands = [], set()
    for profile_name in screen["profiles"]:
        runs = load_runs(os.path.join(results_dir, "nuclei_runs", profile_name))
        if not runs:
            missing.append(profile_name)
            continue
        lines += screen_row(profile_name, profiles[profile_name], runs)
        commands |= {r["command"] for r in runs}
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    lines += ["", "Commands (one per row):", ""] + [f"- `{c}`" for c in sorted(commands)] + [""]
    with atomic_write(os.path.join(results_dir, f"{name}.md"), encoding="utf-8") as f:
        f.write("\n".join(lines))
    return "\n".join(lines)


def colour_means(run):
    """(fg IoU, DSB mAP) of a run averaged over its colour test images."""
    images = [i for i in run.get("per_image", []) if i.get("modality") == "colour"]
    return tuple(statistics.fmean(i[key] for i in images) if images else None for key in ("fg_iou", "dsb_map"))


def render_fine_tuning(table, results_dir):
    """The fine-tuning table from its profiles' run JSONs: one row per profile, mean ± std over
    seeds on the colour test images, and the paired fine-tuned − grey-only difference."""
    runs = {}
    for _, profile_name in table["rows"]:
        found = load_runs(os.path.join(results_dir, "nuclei_runs", profile_name))
        runs[profile_name] = {r["seed"]: colour_means(r) for r in found if r["model"] == table["model"]}
    lines = [f"# {table['title']}", "",
             "Mask R-CNN (R-18 FPN CPU config, nuclei at 17 px), mean ± std over seeds, on the colour "
             "images of dsb2018_test.", "",
             "| row | profile | seeds | fg IoU (%) | DSB mAP |", "| --- | --- | --- | ---: | ---: |"]
    for label, profile_name in table["rows"]:
        values = runs[profile_name]
        seeds = ", ".join(str(s) for s in sorted(values)) or "none yet"
        cells = [fmt(*mean_std([v[k] for v in values.values() if v[k] is not None]), decimals=d)
                 for k, d in ((0, 2), (1, 3))]
        lines.append(f"| {label} | `{profile_name}` | {seeds} | " + " | ".join(cells) + " |")
    before, after = runs[table["before"]], runs[table["after"]]
    paired = sorted(set(before) & set(after))
    if paired:
        lines += ["", f"Fine-tuned − grey only, paired by seed ({len(paired)} pairs):", ""]
        for k, (name, decimals) in enumerate((("fg IoU", 2), ("DSB mAP", 3))):
            diffs = [after[s][k] - before[s][k] for s in paired]
            spread = seed_spread(diffs, [before[s][k] for s in paired], [after[s][k] for s in paired])
            mean = statistics.fmean(diffs)
            per_seed = ", ".join(f"seed {s} {d:+.{decimals}f}" for s, d in zip(paired, diffs))
            verdict = "beyond" if mean > spread else "not beyond"
            lines.append(f"- {name}: {mean:+.{decimals}f} ({per_seed}); {verdict} the seed spread "
                         f"{spread:.{decimals}f} (largest of the paired-difference std and each row's std)")
    commands = sorted({r["command"] for _, p in table["rows"]
                       for r in load_runs(os.path.join(results_dir, "nuclei_runs", p))})
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in commands] + [""]
    text = "\n".join(lines)
    with atomic_write(os.path.join(results_dir, table["file"]), encoding="utf-8") as f:
        f.write(text)
    return text
