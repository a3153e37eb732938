"""The ``zoo-table`` job: a model-zoo model as shipped, scored and timed; its row of the zoo table.

Loads ``maskrcnnpp://<model>`` (the half-precision file, sha256 checked) with the config it
ships with, evaluates it on a split and on that split's grey and colour images (Trainer.test,
as ``tools/train_net.py --eval-only``), and times prediction as ``maskrcnnpp-predict`` runs it
(file to label image, size estimate included) over the split's images. Writes
results/model_zoo_<model>.md and records the figures under "metrics" in the model's
model.json (the weights file, and so its sha256, do not change).
"""
import json
import os
import tempfile
import time

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from maskrcnnpp import model_zoo
from maskrcnnpp.data.semantic_mapper import foreground_mask
from maskrcnnpp.evaluation.nuclei_metrics import foreground_iou_dice
from maskrcnnpp.config_loading import load_cfg
from maskrcnnpp.engine.setup import check_datasets
from maskrcnnpp.engine.trainer import Trainer
from maskrcnnpp.errors import UserError
from maskrcnnpp.predict import NucleiPredictor, parse_formats, prepare_output_dir, read_label_image
from maskrcnnpp.predict.cli import predict_batch
from maskrcnnpp.utils.json_io import write_json_atomic
from maskrcnnpp.weights import load_weights_strictly

from ..measure import git_commit, provenance, publish
from ..tables import fmt, table

FLAGS = ("results-dir", "threads")
DEFAULTS = {"threads": 2}
SUBSETS = ("", "_grey", "_colour")  # the split, then its modality subsets
# Images of the embedded sample (dsb2018_sample_train) whose predicted nuclei model.json records
# under "sample_check", so that a test finds a damaged or mismatched zoo file: stained tissue, then
# fluorescence. The zoo models saw them in training: a check of the file, not a score.
SAMPLE_CHECK_IMAGES = ("45f059cf21d85ecfce0eb93260516f1e2443d210e9a52f9ae2271d604aa3fcc5.png",
                       "d7ec8003735996458b56ccb8ae34d080eb2a6adabef931323239632515b4b220.png")


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="the zoo model's name")
    parser.add_argument("--dataset", default="dsb2018_test", help="the split scored and timed (default: %(default)s)")
    parser.add_argument("--output-dir", default=os.path.join("output", "zoo_table"),
                        help="where the evaluation writes (default: %(default)s)")
    parser.add_argument("--timing-only", action="store_true",
                        help="time prediction again (on an idle machine, say) and keep the scores of model.json")


def scores(cfg, config_file, datasets):
    """{dataset: {fg_iou, fg_dice, dsb_map, segm_ap, num_images}} of the model of ``cfg``."""
    model = build_model(cfg)
    load_weights_strictly(model, cfg.MODEL.WEIGHTS, config_file)
    model.eval()
    results = Trainer.test(cfg, model)
    if len(datasets) == 1:
        results = {datasets[0]: results}
    keys = ("fg_iou", "fg_dice", "dsb_map", "num_images", "diameter_median_error", "diameter_off_1.5x")
    return {name: dict({k: results[name]["nuclei"].get(k) for k in keys}, segm_ap=results[name]["segm"]["AP"])
            for name in datasets}


def seconds_per_image(predictor, dataset):
    """Mean wall seconds per image of predict's loop (labels only), model loading excluded."""
    images = [r["file_name"] for r in DatasetCatalog.get(dataset)]
    with tempfile.TemporaryDirectory() as folder:
        layout = prepare_output_dir(folder, parse_formats("labels"))
        began = time.perf_counter()
        summary = predict_batch(predictor, images, layout, progress=False)
        seconds = time.perf_counter() - began
    if summary.errors:
        raise RuntimeError(f"{len(summary.errors)} images failed: {summary.errors[0]}")
    return seconds / len(images)


def sample_check(predictor):
    """{image file name: {"nuclei", "fg_iou"}} of predict's label images of SAMPLE_CHECK_IMAGES,
    fg IoU against the sample's annotations."""
    records = {os.path.basename(r["file_name"]): r for r in DatasetCatalog.get("dsb2018_sample_train")}
    chosen = [records[name] for name in SAMPLE_CHECK_IMAGES]
    checked = {}
    with tempfile.TemporaryDirectory() as folder:
        layout = prepare_output_dir(folder, parse_formats("labels"))
        results = predict_batch(predictor, [r["file_name"] for r in chosen], layout, progress=False).images
        for name, record, result in zip(SAMPLE_CHECK_IMAGES, chosen, results):
            predicted = read_label_image(result.label_path) > 0
            truth = foreground_mask(record["annotations"], record["height"], record["width"]) > 0
            checked[name] = {"nuclei": result.num_nuclei,
                             "fg_iou": round(100 * foreground_iou_dice(predicted, truth)[0], 2)}
    return checked


def render(args, info, scored, scored_by, seconds, size_mib):
    lines = [f"# Model zoo: `{args.model}` on `{args.dataset}`", "", *provenance(args.command),
             *([f"- scores: `{scored_by['command']}` at commit {scored_by['commit']}"] if args.timing_only else []),
             f"- config: `maskrcnnpp/model_zoo/{args.model}/config.yaml`; weights "
             f"`maskrcnnpp://{args.model}` ({size_mib:.1f} MiB, sha256 `{info['sha256']}`)",
             f"- trained: {info.get('training', '')}",
             f"- seconds per image: `maskrcnnpp-predict --formats labels` over the {args.dataset} images, "
             f"file to label image with the size estimate, {args.threads} threads, model loading excluded",
             ""]
    head = ["images", "n", "fg IoU (%)", "fg Dice (%)", "DSB mAP", "segm AP", "diameter median error (%)",
            "> 1.5x off (%)"]
    cells = [[name, m["num_images"], fmt(m["fg_iou"]), fmt(m["fg_dice"]), fmt(m["dsb_map"], decimals=3),
              fmt(m["segm_ap"], decimals=1), fmt(m["diameter_median_error"], decimals=1),
              fmt(m["diameter_off_1.5x"], decimals=1)] for name, m in scored.items()]
    lines += table(head, cells, "lrrrrrrr")
    lines += ["", f"Prediction: {seconds:.2f} s per image."]
    return "\n".join(lines) + "\n"


ZOO_HEAD = ["name", "config", "training", "test fg IoU", "Dice", "DSB mAP", "segm AP", "grey: fg IoU / DSB mAP",
            "colour: fg IoU / DSB mAP", "s/image (2 threads)", "MiB", "sha256"]


def zoo_row(name, info):
    """A model's row of the zoo table, from its model.json (its scored split and subsets)."""
    metrics = info["metrics"]
    scored = list(metrics["datasets"].values())
    overall, grey, colour = scored[0], scored[1], scored[2]
    return [f"`{name}`" + (" (default)" if info.get("default") else ""),
            f"[config](maskrcnnpp/model_zoo/{name}/config.yaml)", info.get("training", ""),
            fmt(overall["fg_iou"]), fmt(overall["fg_dice"]), fmt(overall["dsb_map"], decimals=3),
            fmt(overall["segm_ap"], decimals=1),
            f"{fmt(grey['fg_iou'])} / {fmt(grey['dsb_map'], decimals=3)}",
            f"{fmt(colour['fg_iou'])} / {fmt(colour['dsb_map'], decimals=3)}",
            fmt(metrics["seconds_per_image"]), fmt(metrics["file_mib"], decimals=1), f"`{info['sha256'][:12]}`"]


def zoo_table_lines():
    """The model-zoo table of every scored model, as the README shows it."""
    infos = {name: model_zoo.model_info(name) for name in model_zoo.list_models()}
    rows = [zoo_row(name, info) for name, info in infos.items() if info.get("metrics")]
    return table(ZOO_HEAD, rows, "lll" + "r" * 9)


def run(args):
    info = model_zoo.model_info(args.model)
    config_file = model_zoo.config_path(args.model)
    datasets = [args.dataset + suffix for suffix in SUBSETS]
    # The evaluation hands the predictor a built model, which then takes a size head only from
    # MODEL.SIZE_HEAD.WEIGHTS: name the zoo file there too, so that it scores as predict runs.
    weights = model_zoo.PREFIX + args.model
    cfg = load_cfg(config_file, ["MODEL.WEIGHTS", weights, "MODEL.SIZE_HEAD.WEIGHTS", weights,
                                 "DATASETS.TEST", str(tuple(datasets)), "OUTPUT_DIR", args.output_dir])
    check_datasets(cfg, ("TEST",))
    if args.timing_only:
        kept = info.get("metrics") or {}
        scored, scored_by = kept.get("datasets"), kept.get("scored_by")
        if list(scored or ()) != datasets or not scored_by:
            raise UserError(f"--timing-only: {args.model}'s model.json holds no scores on {', '.join(datasets)}; "
                            "run zoo-table without it first")
    else:
        scored = scores(cfg, config_file, datasets)
        scored_by = {"command": args.command, "commit": git_commit()}
    predictor = NucleiPredictor(cfg, config_file=config_file)
    predictor.progress = False
    seconds = seconds_per_image(predictor, args.dataset)
    checked = sample_check(predictor)
    path = model_zoo.weights_path(args.model)
    size_mib = os.path.getsize(path) / 2 ** 20
    publish(render(args, info, scored, scored_by, seconds, size_mib),
            os.path.join(args.results_dir, f"model_zoo_{args.model}.md"))
    info["metrics"] = {"datasets": scored, "scored_by": scored_by, "seconds_per_image": seconds, "threads": args.threads,
                       "file_mib": round(size_mib, 2)}
    info["sample_check"] = checked
    write_json_atomic(os.path.join(model_zoo.ROOT, args.model, "model.json"), info)
    publish("\n".join(["# Model zoo", "", "Each model on its scored split (`python -m benchmarks zoo-table --model "
                        "NAME`); the README shows this table.", ""] + zoo_table_lines()) + "\n",
            os.path.join(args.results_dir, "model_zoo.md"))
    print(json.dumps(info["metrics"], indent=1))
    return 0
