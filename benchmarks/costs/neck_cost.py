"""The ``neck-cost`` job: FPN vs the nested FPN on the same ResNet and input.

The neck alone: parameters, GMACs (fvcore), backbone+neck forward and forward+backward time per
image, for FPN and nested grids of several node widths. The whole detector: Mask R-CNN vs Mask
R-CNN++ training-step and inference time from the nuclei configs. Writes
results/neck_cost_<device>.md; with --twins instead the neck cost of every nested twin of
Detectron2's FPN models (results/neck_cost_twins.md).
"""
import os

import numpy as np
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage
from fvcore.nn import FlopCountAnalysis

from maskrcnnpp.engine.setup import load_cfg

from ..measure import REPO, count_parameters, provenance, publish, timed_round_robin
from ..tables import table

FLAGS = ("results-dir",)
NECKS = [
    ("FPN (256 ch)", "build_resnet_fpn_backbone", None),
    ("nested, 256 ch every level", "build_resnet_nested_fpn_backbone", [256, 256, 256, 256]),
    ("nested, 128 ch every level", "build_resnet_nested_fpn_backbone", [128, 128, 128, 128]),
    ("nested, 64/128/256/256 (default)", "build_resnet_nested_fpn_backbone", [64, 128, 256, 256]),
    ("nested, 32/64/128/256", "build_resnet_nested_fpn_backbone", [32, 64, 128, 256]),
]
DETECTOR_CONFIGS = ("configs/nuclei/mask_rcnn_R_50_FPN.yaml", "configs/nuclei/mask_rcnn_R_50_NestedFPN.yaml")
# The nested twins of Detectron2's FPN models (configs/ beside Detectron2's model-zoo configs).
TWINS = (
    ("Mask R-CNN / Faster R-CNN", "COCO-InstanceSegmentation/mask_rcnn_R_50_NestedFPN_1x.yaml",
     "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"),
    ("RetinaNet", "COCO-Detection/retinanet_R_50_NestedFPN_1x.yaml", "COCO-Detection/retinanet_R_50_FPN_1x.yaml"),
    ("Panoptic FPN", "COCO-PanopticSegmentation/panoptic_nested_fpn_R_50_1x.yaml",
     "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"),
    ("Cascade Mask R-CNN", "Misc/cascade_mask_rcnn_R_50_NestedFPN_1x.yaml", "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml"),
)
TWIN_INPUT = (800, 1344)  # a 800x1333 COCO image as Detectron2 pads it (size_divisibility 32)


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-detector", action="store_true", help="only the neck table")
    parser.add_argument("--twins", action="store_true",
                        help="instead: neck params and GMACs of every nested twin of Detectron2's FPN models vs "
                             "FPN at 800x1333")


def neck_cfg(backbone_name, node_channels, depth):
    cfg = load_cfg(os.path.join(REPO, "configs/Base-RCNN-NestedFPN.yaml"))
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.BACKBONE.NAME = backbone_name
    if node_channels is not None:
        cfg.MODEL.NESTED_FPN.NODE_CHANNELS = node_channels
    return cfg


class _Traceable(torch.nn.Module):
    """fvcore traces tuples more reliably than dicts."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        out = self.backbone(x)
        return tuple(out[k] for k in sorted(out))


def neck_cost(backbone, x):
    """{neck_params_m, neck_gmacs, bottom_up_gmacs} of a Detectron2 backbone with a ``bottom_up``."""
    backbone.eval()
    with torch.no_grad():
        flops = FlopCountAnalysis(_Traceable(backbone), (x,))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total, bottom_up = flops.total(), flops.by_module()["backbone.bottom_up"]
    params = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("bottom_up."))
    return {"neck_params_m": params / 1e6, "neck_gmacs": (total - bottom_up) / 1e9, "bottom_up_gmacs": bottom_up / 1e9}


def measure_necks(args):
    x = torch.randn(1, 3, args.size, args.size, device=args.device)
    rows, backbones = [], []
    for name, backbone_name, widths in NECKS:
        backbone = build_backbone(neck_cfg(backbone_name, widths, args.depth), ShapeSpec(channels=3)).to(args.device)
        rows.append(dict(neck=name, **neck_cost(backbone, x)))
        backbones.append(backbone)

    def forward(backbone):
        def run():
            backbone.eval()
            with torch.no_grad():
                backbone(x)
        return run

    def forward_backward(backbone):
        def run():
            backbone.train()
            sum(v.float().mean() for v in backbone(x).values()).backward()
        return run

    fwd = timed_round_robin([forward(b) for b in backbones], args.device, args.repeats)
    bwd = timed_round_robin([forward_backward(b) for b in backbones], args.device, args.repeats)
    for row, f, b in zip(rows, fwd, bwd):
        row.update(forward_s=f[0], forward_cpu_s=f[1], forward_backward_s=b[0], forward_backward_cpu_s=b[1])
        print(row, flush=True)
    return rows


def synthetic_batch(size, num_images, device):
    from detectron2.structures import BitMasks, Instances

    from maskrcnnpp.data import synthetic

    rng = np.random.default_rng(0)
    batch = []
    for _ in range(num_images):
        image, masks = synthetic.make_image(rng, size, size, max_nuclei=40)
        inst = Instances((size, size))
        inst.gt_masks = BitMasks(torch.from_numpy(np.stack(masks)))
        inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        inst.gt_classes = torch.zeros(len(masks), dtype=torch.int64)
        tensor = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
        batch.append({"image": tensor.to(device), "instances": inst.to(device), "height": size, "width": size})
    return batch


def measure_detectors(args):
    batch = synthetic_batch(args.size, 2, args.device)
    test_input = [{k: v for k, v in d.items() if k != "instances"} for d in batch[:1]]
    models, train_steps, inferences = [], [], []
    for config in DETECTOR_CONFIGS:
        cfg = load_cfg(os.path.join(REPO, config))
        cfg.MODEL.DEVICE = args.device
        torch.manual_seed(0)  # the same weights in the bottom-up path and heads, so only the neck differs
        model = build_model(cfg)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        models.append(model)

        def train_step(model=model, optimizer=optimizer):
            model.train()
            with EventStorage(0):
                losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()

        def inference(model=model):
            model.eval()
            with torch.no_grad():
                model(test_input)

        train_steps.append(train_step)
        inferences.append(inference)
    train = timed_round_robin(train_steps, args.device, args.repeats)
    infer = timed_round_robin(inferences, args.device, args.repeats)
    rows = []
    for config, model, t, i in zip(DETECTOR_CONFIGS, models, train, infer):
        rows.append({"config": config, "params_m": count_parameters(model) / 1e6, "train_s": t[0] / len(batch),
                     "train_cpu_s": t[1] / len(batch), "infer_s": i[0], "infer_cpu_s": i[1]})
        print(rows[-1], flush=True)
    return rows


def render(necks, detectors, args):
    lines = [
        f"# Neck cost: FPN vs nested FPN ({args.device})",
        "",
        *provenance(args.command, args.device, commit=False, date=True),
        f"- input: 1×3×{args.size}×{args.size}, ResNet-{args.depth} bottom-up "
        f"({necks[0]['bottom_up_gmacs']:.1f} GMACs), median of {args.repeats} runs after 2 warm-ups, variants timed in turn",
        "- GMACs: multiply-accumulates counted by fvcore (what it calls flops); "
        "times are per image, backbone + neck",
        "",
    ]
    lines += table(["neck", "neck params (M)", "neck GMACs", "forward wall (s)", "forward CPU (s)", "fwd+bwd wall (s)",
                    "fwd+bwd CPU (s)"],
                   [[r["neck"], f"{r['neck_params_m']:.2f}", f"{r['neck_gmacs']:.1f}", f"{r['forward_s']:.3f}",
                     f"{r['forward_cpu_s']:.3f}", f"{r['forward_backward_s']:.3f}", f"{r['forward_backward_cpu_s']:.3f}"]
                    for r in necks], "l" + "r" * 6)
    if detectors:
        base = detectors[0]
        lines += ["", f"Whole detector, nuclei configs, {args.size}×{args.size} synthetic images "
                  f"(training step: batch of 2, SGD; inference: 1 image):", ""]
        lines += table(["config", "params (M)", "train step/image wall (s)", "CPU (s)", "CPU vs FPN",
                        "inference/image wall (s)", "CPU (s)", "CPU vs FPN"],
                       [[f"`{r['config']}`", f"{r['params_m']:.2f}", f"{r['train_s']:.3f}", f"{r['train_cpu_s']:.3f}",
                         f"{100 * (r['train_cpu_s'] / base['train_cpu_s'] - 1):+.1f} %", f"{r['infer_s']:.3f}",
                         f"{r['infer_cpu_s']:.3f}", f"{100 * (r['infer_cpu_s'] / base['infer_cpu_s'] - 1):+.1f} %"]
                        for r in detectors], "l" + "r" * 7)
    return "\n".join(lines) + "\n"


def twin_rows():
    from detectron2 import model_zoo

    x = torch.randn(1, 3, *TWIN_INPUT)
    rows = []
    for family, ours, theirs in TWINS:
        costs = {}
        for key, path in (("nested", os.path.join(REPO, "configs", ours)), ("fpn", model_zoo.get_config_file(theirs))):
            torch.manual_seed(0)
            costs[key] = neck_cost(build_backbone(load_cfg(path, ["MODEL.DEVICE", "cpu"])), x)
        rows.append({"family": family, "config": ours, "twin_of": theirs, **{
            f"{key}_{metric}": value for key, cost in costs.items() for metric, value in cost.items()}})
        print(rows[-1], flush=True)
    return rows


def render_twins(rows, command):
    lines = [
        "# Neck cost of the nested twins of Detectron2's FPN models",
        "",
        *provenance(command, date=True),
        f"- input: 1×3×{TWIN_INPUT[0]}×{TWIN_INPUT[1]} (an 800×1333 COCO image padded to a multiple of 32), "
        "ResNet-50 bottom-up, each model's config as shipped (ours) and Detectron2's model-zoo twin",
        "- GMACs: multiply-accumulates counted by fvcore of the neck alone (backbone minus its bottom-up), "
        "p6/p7 blocks included; counted, not timed",
        "",
    ]
    lines += table(["model", "config", "FPN neck params (M)", "nested neck params (M)", "FPN neck GMACs",
                    "nested neck GMACs", "nested vs FPN GMACs"],
                   [[r["family"], f"`{r['config']}`", f"{r['fpn_neck_params_m']:.2f}", f"{r['nested_neck_params_m']:.2f}",
                     f"{r['fpn_neck_gmacs']:.1f}", f"{r['nested_neck_gmacs']:.1f}",
                     f"{100 * (r['nested_neck_gmacs'] / r['fpn_neck_gmacs'] - 1):+.1f} %"] for r in rows], "ll" + "r" * 5)
    return "\n".join(lines) + "\n"


def run(args):
    if args.twins:
        publish(render_twins(twin_rows(), args.command), os.path.join(args.results_dir, "neck_cost_twins.md"))
        return 0
    necks = measure_necks(args)
    detectors = [] if args.skip_detector else measure_detectors(args)
    publish(render(necks, detectors, args), os.path.join(args.results_dir, f"neck_cost_{args.device}.md"))
    return 0
