"""What the nuclei reports read from run records: metrics, groups of test images, costs, the
diameter estimate's errors, and the nested − FPN statistics over them."""
import math
import statistics
from collections import defaultdict

from ..records import MODEL_ORDER
from ..stats import beyond_spread, mean_std, paired

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
SIZE_KEYS = ("params_m", "gmacs_backbone", "gmacs_whole")
TIME_KEYS = ("train_wall", "train_cpu", "infer_ips", "infer_cpu")  # measured, so machine-dependent
COST_KEYS = SIZE_KEYS + TIME_KEYS


def field_value(run, section, field):
    """``run["metrics"][section][field]``; None when absent or NaN (COCO's "no objects of that size")."""
    value = run["metrics"].get(section, {}).get(field)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def metric_value(run, key):
    return field_value(run, *next(m[2] for m in METRICS if m[0] == key))


def by_model(runs):
    grouped = defaultdict(list)
    for r in runs:
        grouped[r["model"]].append(r)
    return grouped


def models_of(runs):
    grouped = by_model(runs)
    return [m for m in MODEL_ORDER if m in grouped]


def model_names(runs):
    return {r["model"]: r["model_name"] for r in runs}


def aggregate(runs):
    """{model: {metric: (mean, std, n)}} over seeds."""
    table = {}
    for model, model_runs in by_model(runs).items():
        table[model] = {}
        for key, *_ in METRICS:
            values = [metric_value(r, key) for r in model_runs]
            table[model][key] = (*mean_std(values), sum(v is not None for v in values))
    return table


def by_seed(runs, model, value_of):
    return {r["seed"]: value_of(r) for r in runs if r["model"] == model}


def paired_difference(runs, value_of):
    """{"seeds", "diffs", "mean", "std"}: nested minus FPN of ``value_of(run)`` for every seed both
    finished with a value."""
    seeds, diffs = paired(by_seed(runs, "nested", value_of), by_seed(runs, "fpn", value_of))
    mean, std = mean_std(diffs)
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "std": std}


def paired_differences(runs):
    """{metric: paired_difference} for every metric of the table."""
    return {key: paired_difference(runs, lambda r, key=key: metric_value(r, key)) for key, *_ in METRICS}


def verdict(runs, key):
    """Whether the nested FPN wins ``key`` by more than the seed-to-seed spread, in words. The
    spread: the paired differences' std and each model's std over all its runs."""
    diffs = paired_difference(runs, lambda r: metric_value(r, key))["diffs"]
    if len(diffs) < 2:
        return f"too few paired runs ({len(diffs)}) to compare with the seed-to-seed spread"
    rows = [[metric_value(r, key) for r in rs] for rs in by_model(runs).values()]
    mean, spread, wins = beyond_spread(diffs, *rows)
    how = "(largest of the paired-difference std and each model's seed std)"
    if wins:
        return f"yes: mean paired difference {mean:+.4g} > spread {spread:.4g} {how}"
    return f"no: mean paired difference {mean:+.4g} is not above the spread {spread:.4g} {how}"


def size_group(record):
    return f"{record.get('height')}×{record.get('width')}"


def modality_group(record):
    return record.get("modality") or "unknown"


def breakdown(runs, group_of):
    """Per group of test images: images, and per model mean fg IoU / DSB mAP (mean over runs of
    the per-image mean in the group), plus the paired nested − FPN difference of each."""
    groups = defaultdict(lambda: defaultdict(dict))
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
            cell = {m: {s: v for (mm, s), v in groups[g][key].items() if mm == m} for m in MODEL_ORDER}
            for m in MODEL_ORDER:
                row[(m, key)] = mean_std(cell[m].values())[0]
            row[("diff", key)] = mean_std(paired(cell["nested"], cell["fpn"])[1])[0]
        rows.append(row)
    return rows


def mean_of(runs, getter):
    return mean_std([getter(r) for r in runs])[0]


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


def model_cost(costs, model):
    return (costs or {}).get("models", {}).get(model)


def cpu_models(model_runs):
    """The CPU models (the machine string up to its first comma) the runs were timed on."""
    return sorted({r["machine"].split(",")[0] for r in model_runs})


def timed_on_same_cpus(grouped):
    """Whether every model's runs (model -> runs) were timed on the same set of CPU models."""
    return len({tuple(cpu_models(rs)) for rs in grouped.values()}) <= 1


def iterations_text(model_runs):
    """The runs' iteration counts: one number when they agree, else each run's in the runs' order
    (a wall-clock budget gives each run the iterations its own speed probe allowed)."""
    counts = [r["max_iter"] for r in model_runs]
    return str(counts[0]) if len(set(counts)) == 1 else ", ".join(str(c) for c in counts)


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
    fpn_runs, nested_runs = ({r["seed"]: r for r in runs if r["model"] == m} for m in MODEL_ORDER)
    out = {"seeds": [], "images": [], "fg_iou": [], "dsb_map": []}
    for seed in sorted(set(fpn_runs) & set(nested_runs)):
        fpn, nested = ({i["image_id"]: i for i in rs[seed]["per_image"]} for rs in (fpn_runs, nested_runs))
        kept = [k for k in fpn if k in nested and all(
            has_diameters(im) and not estimate_failed(im) for im in (fpn[k], nested[k]))]
        if not kept:
            continue
        out["seeds"].append(seed)
        out["images"].append(len(kept))
        for key in ("fg_iou", "dsb_map"):
            out[key].append(statistics.fmean(nested[k][key] - fpn[k][key] for k in kept))
    return out


def colour_means(run):
    """(fg IoU, DSB mAP) of a run averaged over its colour test images."""
    images = [i for i in run.get("per_image", []) if i.get("modality") == "colour"]
    return tuple(statistics.fmean(i[key] for i in images) if images else None for key in ("fg_iou", "dsb_map"))
