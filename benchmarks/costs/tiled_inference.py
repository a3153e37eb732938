"""The ``tiled-inference`` job: tiled prediction of big images, from mosaics of one sample image.

Predicts one image of the embedded sample (its nuclei found on the image alone are the
reference), then mosaics of copies of it, each copy framed by a background gap wider than a
nucleus so that no nucleus is cut at a seam. A mosaic is predicted exactly as
``tools/predict.py`` does, in a fresh process whose peak memory (RSS) is read when it ends.
Reports nuclei found against copies x nuclei on one copy, duplicate pairs (two detections of one
nucleus at mask IoU >= 0.5), peak RSS and megapixels per second. First, the stitching check with
the real model: the largest sample image predicted in small tiles against the same image in one
tile. Writes results/tiled_inference_cpu.md.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from ..measure import REPO, git_commit, machine_description, publish
from ..tables import table

FLAGS = ("results-dir",)

# The tiled-vs-untiled check: the largest sample image (520 x 696 fluorescence, 150 nuclei).
CHECK_IMAGE = "maskrcnnpp/data/builtin/sample/images/e7a3a7c99483c243742b6cfa74e81cd48f126dcef004016ad0151df6c16a6243.png"
# The sample image mosaicked by default: a 256 x 256 fluorescence image of the embedded sample.
SAMPLE_IMAGE = "maskrcnnpp/data/builtin/sample/images/0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9.png"


def mosaic(tile, side, gap):
    """A side x side image of copies of ``tile`` on its background colour, ``gap`` px apart;
    returns the image and the number of whole copies in it."""
    background = np.median(tile.reshape(-1, tile.shape[2]), axis=0).astype(np.uint8)
    image = np.empty((side, side, tile.shape[2]), dtype=np.uint8)
    image[:] = background
    step_y, step_x = tile.shape[0] + gap, tile.shape[1] + gap
    copies = 0
    for y in range(gap, side - tile.shape[0] + 1, step_y):
        for x in range(gap, side - tile.shape[1] + 1, step_x):
            image[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            copies += 1
    return image, copies


def duplicate_pairs(records):
    """Pairs of detections (COCO records) whose masks overlap at IoU >= 0.5, found box by box."""
    from maskrcnnpp.data.segmentation import decode_segmentation

    boxes = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    pairs = 0
    for i in range(len(records)):
        near = np.flatnonzero((x0 < x1[i]) & (x1 > x0[i]) & (y0 < y1[i]) & (y1 > y0[i]))
        for j in near[near > i]:
            a, b = (decode_segmentation(records[k]["segmentation"]) for k in (i, j))
            union = np.count_nonzero(a | b)
            if union and np.count_nonzero(a & b) / union >= 0.5:
                pairs += 1
    return pairs


def matched_shares(reference, other, thresholds=(0.9, 0.5)):
    """Share of the ``reference`` masks that one of ``other`` matches at mask IoU >= each threshold."""
    best = [max((np.count_nonzero(m & t) / max(1, np.count_nonzero(m | t)) for t in other), default=0.0)
            for m in reference]
    return [float(np.mean([b >= t for b in best])) if best else float("nan") for t in thresholds]


def mask_duplicates(masks):
    return sum(
        1 for i in range(len(masks)) for j in range(i + 1, len(masks))
        if np.count_nonzero(masks[i] | masks[j])
        and np.count_nonzero(masks[i] & masks[j]) / np.count_nonzero(masks[i] | masks[j]) >= 0.5
    )


def tiled_vs_untiled(args, image_path, small_tile=256, overlap=80, pad=32):
    """Predict one image in one tile and in ``small_tile`` px tiles, and, as the model's own
    sensitivity to what surrounds a nucleus, in one tile with a ``pad`` px (working scale) frame
    of background around it. Returns counts, shares of the untiled nuclei matched and duplicates."""
    import maskrcnnpp  # noqa: F401  (guards and registration before detectron2)
    from maskrcnnpp.engine.setup import load_cfg
    from maskrcnnpp.predict import NucleiPredictor, read_image_rgb8

    image = read_image_rgb8(image_path)
    shape = image.shape[:2]

    def predict(img, tile_size):
        cfg = load_cfg(args.config_file, ["MODEL.WEIGHTS", args.weights, "TEST.TILE_SIZE", str(tile_size),
                                          "TEST.TILE_OVERLAP", str(overlap)])
        return NucleiPredictor(cfg, config_file=args.config_file)(img, diameter=args.check_diameter).detections

    untiled = [d.mask.full(shape) for d in predict(image, 4 * max(shape))]
    tiled = [d.mask.full(shape) for d in predict(image, small_tile)]
    border = int(round(pad * args.check_diameter / 17.0))  # image pixels for `pad` working pixels
    framed = np.empty((shape[0] + 2 * border, shape[1] + 2 * border, 3), np.uint8)
    framed[:] = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    framed[border:-border, border:-border] = image
    in_frame = [d.mask.full(framed.shape[:2])[border:-border, border:-border]
                for d in predict(framed, 4 * max(framed.shape))]
    return {"untiled": len(untiled), "tiled": len(tiled), "framed": len(in_frame), "frame_px": border,
            "tiled_shares": matched_shares(untiled, tiled), "framed_shares": matched_shares(untiled, in_frame),
            "duplicates": mask_duplicates(tiled)}


def predict_in_child(args, image_path, output, overlay):
    """Run maskrcnnpp.predict on one image in a fresh process; its wall time and peak RSS (MiB)."""
    code = (
        "import sys, resource, maskrcnnpp\n"
        "from maskrcnnpp.predict.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(status)\n"
    )
    argv = ["--config-file", args.config_file, "--input", image_path, "--output", output, "--no-progress",
            "--diameter", str(args.diameter)]
    argv += ["--formats", "all" if overlay else "labels,coco,imagej,qupath"]
    argv += ["MODEL.WEIGHTS", args.weights]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"prediction of {image_path} failed:\n{result.stderr[-3000:]}")
    peak = [line for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KIB")]
    return wall, int(peak[-1].split()[1]) / 1024


def add_arguments(parser):
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 8000])
    parser.add_argument("--diameter", type=float, default=17.0,
                        help="nucleus diameter of the sample image, px (given, so no estimate pass)")
    parser.add_argument("--check-image", default=CHECK_IMAGE, help="image of the tiled-vs-untiled check")
    parser.add_argument("--check-diameter", type=float, default=27.0,
                        help="its nuclei's diameter, px (the sample's annotated median)")
    parser.add_argument("--gap", type=int, default=40, help="background between copies, px")
    parser.add_argument("--image", default=SAMPLE_IMAGE)
    parser.add_argument("--overlay-max-side", type=int, default=4000,
                        help="mosaics larger than this are predicted without the overlay")


def run(args):
    check = tiled_vs_untiled(args, os.path.join(REPO, args.check_image))
    print("tiled vs untiled:", check, flush=True)
    tile = np.asarray(Image.open(os.path.join(REPO, args.image)).convert("RGB"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        single_path = os.path.join(tmp, "single.png")
        Image.fromarray(tile).save(single_path)
        predict_in_child(args, single_path, os.path.join(tmp, "single"), overlay=True)
        with open(os.path.join(tmp, "single", "coco_instances_results.json")) as f:
            single = json.load(f)
        per_copy, duplicates_per_copy = len(single), duplicate_pairs(single)
        for side in args.sizes:
            image, copies = mosaic(tile, side, args.gap)
            path = os.path.join(tmp, f"mosaic_{side}.png")
            Image.fromarray(image).save(path)
            del image
            out = os.path.join(tmp, f"out_{side}")
            overlay = side <= args.overlay_max_side
            wall, peak_mib = predict_in_child(args, path, out, overlay)
            with open(os.path.join(out, "coco_instances_results.json")) as f:
                records = json.load(f)
            expected = copies * per_copy
            rows.append({
                "side": side, "copies": copies, "expected": expected, "found": len(records),
                "deviation": 100.0 * (len(records) - expected) / expected if expected else float("nan"),
                "duplicates": duplicate_pairs(records), "expected_duplicates": copies * duplicates_per_copy,
                "peak_mib": peak_mib,
                "mp_per_s": side * side / 1e6 / wall, "wall_s": wall, "overlay": overlay,
            })
            print(rows[-1], flush=True)
    publish(render(rows, per_copy, args, check), os.path.join(args.results_dir, "tiled_inference_cpu.md"))
    return 0




def render(rows, per_copy, args, check):
    tiled90, tiled50 = (100 * v for v in check["tiled_shares"])
    framed90, framed50 = (100 * v for v in check["framed_shares"])
    lines = [
        "# Tiled prediction of big images (CPU)",
        "",
        f"Stitching check: `{os.path.basename(args.check_image)}` (520 x 696) predicted at "
        f"`--diameter {args.check_diameter:g}` in one tile gives {check['untiled']} nuclei; in 256 px tiles "
        f"(80 px overlap) {check['tiled']}: {tiled90:.1f} % of the untiled nuclei matched at mask IoU >= 0.9 "
        f"({tiled50:.1f} % at IoU >= 0.5), {check['duplicates']} duplicate pairs. The model's own sensitivity "
        f"to a nucleus' surroundings, for scale: the same image in one tile framed by {check['frame_px']} px of "
        f"its background colour matches {framed90:.1f} % of the untiled nuclei at IoU >= 0.9 "
        f"({framed50:.1f} % at 0.5). Tiles are cut from the image resized once to the working scale, so "
        f"a tile sees exactly the pixels the whole image has there; what differs is the context (the "
        f"GroupNorm statistics are a tile's, not the image's).",
        "",
        f"Mosaics of `{os.path.basename(args.image)}` ({per_copy} nuclei found on it alone), copies "
        f"{args.gap} px apart on its background colour, predicted with `--diameter {args.diameter:g}` "
        f"by `{args.config_file}` (weights `{args.weights}`). Expected = copies x nuclei on one copy.",
        "",
    ]
    lines += table(
        ["mosaic", "copies", "expected", "found", "found vs expected", "duplicate pairs (IoU >= 0.5)",
         "duplicate pairs on one copy x copies", "peak RSS (MiB)", "MP/s", "wall (s)", "overlay"],
        [[f"{r['side']}x{r['side']}", r["copies"], r["expected"], r["found"], f"{r['deviation']:+.2f} %", r["duplicates"],
          r["expected_duplicates"], f"{r['peak_mib']:.0f}", f"{r['mp_per_s']:.3f}", f"{r['wall_s']:.0f}",
          "drawn" if r["overlay"] else "not drawn"] for r in rows], "l" + "r" * 9 + "l")
    lines += [
        "",
        f"- command: `{args.command}`",
        f"- machine: {machine_description('cpu')}; peak RSS is the prediction process's own "
        f"(ru_maxrss), with the label image and JSON written",
        f"- git commit: {git_commit()}; date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
    ]
    return "\n".join(lines)
