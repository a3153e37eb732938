"""Tables over several profiles: the val screens, the fine-tuning table and the final comparison."""
import os
import statistics

from ..measure import publish
from ..records import MODEL_ORDER, load_nuclei_runs, load_profile_runs, nuclei_runs_dir
from ..stats import beyond_spread, mean_std, paired
from ..tables import fmt, relative, table
from .metrics import (
    aggregate, by_model, colour_means, cost_row, cpu_models, diameter_errors, iterations_text, mean_of,
    models_of, paired_differences, size_group, timed_on_same_cpus, verdict,
)
from .profiles import FINAL, FINE_TUNING, PROFILES, SCREENS

SCREEN_NOTE = (
    "One row per profile and model, mean ± std over its seeds; fg IoU (%), DSB mAP and "
    "segm AP (COCO, %) on the profile's test split; the 1024×1024 and 360×360 columns are "
    "the fg IoU of those val images; oracle: at each image's annotated diameter; diameter "
    "error: median relative error of the estimated diameter over the images; GFLOPs: "
    "fvcore's count (one multiply-accumulate = one flop) of the backbone and neck on the "
    "profile's square test input (256×256 for the R-18 profiles); commit: the code the run was evaluated with (the diameter estimate "
    "changed between commits).")
# key, label, decimals: the columns the peer is compared on (its published figures)
PEER_METRICS = (("fg_iou", "fg IoU (%)", 2), ("fg_dice", "fg Dice (%)", 2), ("dsb_map", "DSB mAP", 3))


def summaries_of(profile_name):
    """The summary tables a profile's runs appear in, as (render function, its spec)."""
    found = [(render_screen, (name, screen)) for name, screen in SCREENS.items() if profile_name in screen["profiles"]]
    found += [(render_fine_tuning, (name, spec)) for name, spec in FINE_TUNING.items()
              if profile_name in (p for _, p in spec["rows"])]
    final = {p for _, p in FINAL["rows"]} | {PROFILES[p].fpn_runs_from for _, p in FINAL["rows"]}
    if profile_name in final:
        found.append((render_final, FINAL))
    return found


def commands_lines(runs, title="Commands:"):
    return ["", title, ""] + [f"- `{c}`" for c in sorted({r["command"] for r in runs})] + [""]


def screen_rows(profile_name, profile, runs):
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
        rows.append([
            f"`{profile_name}`", rs[0]["model_name"], len(rs),
            stat(lambda r: r["metrics"]["nuclei"]["fg_iou"]), stat(lambda r: r["metrics"]["nuclei"]["dsb_map"], 3),
            stat(lambda r: r["metrics"].get("segm", {}).get("AP"), 1), group("1024×1024"), group("360×360"),
            stat(lambda r: r["oracle_scale_metrics"]["fg_iou"]) if oracle else "–",
            stat(lambda r: r["oracle_scale_metrics"]["dsb_map"], 3) if oracle else "–",
            fmt(*mean_std(errors), decimals=1) if errors else "–",
            f"{rs[0]['parameters'] / 1e6:.2f}", fmt(rs[0]["gflops"]["backbone_and_neck"], decimals=1),
            stat(lambda r: r["train_timing"]["cpu_s_per_iter"]), stat(lambda r: r["inference_timing"]["cpu_s_per_image"]),
            ", ".join(sorted({r.get("git_commit", "?")[:7] for r in rs})), profile.description])
    return rows


def render_screen(spec, results_dir):
    """A screen's table from the run records of its profiles (profiles without runs: one line)."""
    name, screen = spec
    rows, missing, runs = [], [], []
    for profile_name in screen["profiles"]:
        found = load_nuclei_runs(nuclei_runs_dir(results_dir, profile_name))
        if not found:
            missing.append(profile_name)
        rows += screen_rows(profile_name, PROFILES[profile_name], found)
        runs += found
    head = ["profile", "model", "runs", "fg IoU", "DSB mAP", "segm AP", "fg IoU 1024×1024", "fg IoU 360×360",
            "fg IoU oracle", "DSB mAP oracle", "diameter error (%)", "params (M)", "GFLOPs backbone+neck",
            "train CPU s/iter", "inference CPU s/img", "commit", "setting"]
    lines = [f"# {screen['title']}", "", SCREEN_NOTE, ""] + table(head, rows, "llr" + "r" * 12 + "ll")
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    return finish(lines + commands_lines(runs, "Commands (one per row):"), os.path.join(results_dir, f"{name}.md"))


def render_fine_tuning(spec, results_dir):
    """A fine-tuning table: one row per profile, mean ± std over seeds on the colour test images,
    and each pair's difference, paired by seed."""
    name, spec = spec
    runs = {p: load_nuclei_runs(nuclei_runs_dir(results_dir, p)) for _, p in spec["rows"]}
    scores = {p: {r["seed"]: colour_means(r) for r in rs if r["model"] == spec["model"]} for p, rs in runs.items()}
    rows = []
    for label, profile_name in spec["rows"]:
        values = scores[profile_name]
        rows.append([label, f"`{profile_name}`", ", ".join(str(s) for s in sorted(values)) or "none yet"]
                    + [fmt(*mean_std([v[k] for v in values.values()]), decimals=d) for k, d in ((0, 2), (1, 3))])
    lines = [f"# {spec['title']}", "", spec["note"], ""]
    lines += table(["row", "profile", "seeds", "fg IoU (%)", "DSB mAP"], rows, "lllrr")
    for after_name, before_name, heading in spec["pairs"]:
        before, after = scores[before_name], scores[after_name]
        for k, (metric, decimals) in enumerate((("fg IoU", 2), ("DSB mAP", 3))):
            seeds, diffs = paired({s: v[k] for s, v in after.items()}, {s: v[k] for s, v in before.items()})
            if not seeds:
                break
            if k == 0:
                lines += ["", f"{heading}, paired by seed ({len(seeds)} pair{'s' if len(seeds) > 1 else ''}):", ""]
            per_seed = ", ".join(f"seed {s} {d:+.{decimals}f}" for s, d in zip(seeds, diffs))
            if len(seeds) < 2:
                lines.append(f"- {metric}: {diffs[0]:+.{decimals}f} ({per_seed}); one pair: no spread to judge it by")
                continue
            mean, spread, wins = beyond_spread(diffs, [before[s][k] for s in seeds], [after[s][k] for s in seeds])
            lines.append(f"- {metric}: {mean:+.{decimals}f} ({per_seed}); {'beyond' if wins else 'not beyond'} "
                         f"the seed spread {spread:.{decimals}f} (largest of the paired-difference std and each "
                         "row's std)")
    everything = [r for rs in runs.values() for r in rs]
    return finish(lines + commands_lines(everything), os.path.join(results_dir, f"{name}.md"))


def final_model_rows(label, profile_name, runs):
    """The final table's rows for one profile: a row per model, mean ± std over its seeds."""
    means, rows = aggregate(runs), []
    for model in models_of(runs):
        rs = by_model(runs)[model]
        c = cost_row(rs)
        train_min = mean_of(rs, lambda r: r["train_timing"].get("wall_s", 0) / 60 or None)
        rows.append([label, rs[0]["model_name"], f"`{profile_name}`", ", ".join(str(r["seed"]) for r in rs)]
                    + [fmt(*means[model][key][:2], decimals=d) for key, _, d in PEER_METRICS]
                    + [fmt(*means[model]["segm_ap"][:2], decimals=1), f"{c['params_m']:.2f}",
                       fmt(c["gmacs_backbone"], decimals=1), iterations_text(rs), fmt(train_min, decimals=1),
                       fmt(c["train_cpu"]), fmt(c["infer_cpu"])])
    return rows


def final_cost_lines(runs, spec):
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
        ok = "within" if nested[key] / fpn[key] - 1 <= limit else "over"
        lines.append(f"- {name}: nested {relative(nested[key], fpn[key])} vs FPN "
                     f"({fmt(nested[key])} vs {fmt(fpn[key])}); {ok} the goal of +{100 * limit:.0f} %")
    return lines


def peer_lines(runs_by_profile, spec):
    """Each model of each profile against the peer's published figures."""
    peer, lines = spec["peer"], []
    for label, profile_name in spec["rows"]:
        runs = runs_by_profile[profile_name]
        means = aggregate(runs)
        for model in models_of(runs):
            mine = {key: means[model][key][0] for key, _, _ in PEER_METRICS}
            parts = [f"{name} {mine[key] - peer[key]:+.{d}f}" for key, name, d in PEER_METRICS if mine[key] is not None]
            beats = all(mine[key] is not None and mine[key] > peer[key] for key, _, _ in PEER_METRICS)
            lines.append(f"- {label}, {by_model(runs)[model][0]['model_name']}: " + ", ".join(parts)
                         + f" vs {peer['name']}; " + ("beats it on all three" if beats else "does not beat it on all three"))
    return lines


def render_final(spec, results_dir, profiles=None):
    """The final table from the run records; ``profiles`` (name -> Profile, default PROFILES)
    tells which rows take their FPN runs from another profile."""
    profiles = PROFILES if profiles is None else profiles
    runs_by_profile = {p: load_profile_runs(results_dir, p, getattr(profiles.get(p), "fpn_runs_from", ""))
                       for _, p in spec["rows"]}
    peer = spec["peer"]
    head = ["row", "model", "profile", "seeds"] + [n for _, n, _ in PEER_METRICS] + [
        "segm AP", "params (M)", "GFLOPs backbone+neck", "iterations", "train wall (min)",
        "train CPU s/iter", "inference CPU s/img"]
    rows = [row for label, p in spec["rows"] for row in final_model_rows(label, p, runs_by_profile[p])]
    rows.append([peer["label"], peer["name"], "–", "–"] + [fmt(peer[key], decimals=d) for key, _, d in PEER_METRICS]
                + ["–", "–", "–", "–", fmt(peer["train_min"], decimals=1), "–", fmt(peer["infer_s"])])
    lines = [f"# {spec['title']}", "", spec["note"], ""] + table(head, rows, "llll" + "r" * (len(head) - 4))
    lines += ["", f"The peer's row: {peer['source']}", ""]
    missing = [f"{label}, `{p}`" for label, p in spec["rows"] if not runs_by_profile[p]]
    if missing:
        lines += [f"Not run yet: {'; '.join(missing)}.", ""]
    pair_runs = runs_by_profile[spec["pair"]]
    lines += [f"## Decision (`{spec['pair']}`, paired by seed)", ""]
    if all(m in by_model(pair_runs) for m in MODEL_ORDER):
        diffs = paired_differences(pair_runs)
        for key, name, d in PEER_METRICS[:1] + PEER_METRICS[2:]:
            p = diffs[key]
            per_seed = ", ".join(f"seed {s} {v:+.{d}f}" for s, v in zip(p["seeds"], p["diffs"]))
            lines.append(f"- {name}, nested − FPN: {per_seed or 'no paired seeds'}; "
                         f"beats by more than the spread? {verdict(pair_runs, key)}")
    else:
        lines.append("- not both models run yet")
    lines += final_cost_lines(pair_runs, spec)
    lines += ["", f"Against {peer['name']} (mean over seeds minus the peer's figure):", ""]
    lines += peer_lines(runs_by_profile, spec)
    everything = [r for rs in runs_by_profile.values() for r in rs]
    return finish(lines + commands_lines(everything), os.path.join(results_dir, spec["file"]))


def finish(lines, path):
    """Write a summary table's text to ``path``; returns the text."""
    return publish("\n".join(lines), path, show=False)
