"""``tools/export_zoo_model.py``: put a trained model into the model zoo.

    python tools/export_zoo_model.py --name R18_NestedFPN_dsb2018 \\
        --config-file configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml --weights output/zoo/model_final.pth \\
        --size-head output/zoo/size_head.pth --training "dsb2018 train+val (fixed), 6000 it" \\
        --command "python tools/train_net.py ..." [--default] [KEY VALUE ...]

Writes ``maskrcnnpp/model_zoo/<name>/``: the weights (and size head) in half precision, the
whole config (the file plus the overrides it was trained with) and model.json; then
``python -m benchmarks zoo-table --model <name>`` scores the shipped file and records its figures.
"""
import argparse
import sys

from ..config_loading import load_cfg
from ..errors import UserError, run_command
from . import ROOT, export_model, list_models, model_info

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(prog="export_zoo_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the model's name: maskrcnnpp://<name>")
    parser.add_argument("--config-file", required=True, help="the config it was trained with")
    parser.add_argument("--weights", required=True, help="its checkpoint (model_final.pth)")
    parser.add_argument("--size-head", default="", help="its size head (maskrcnnpp-train-size-head's file)")
    parser.add_argument("--training", required=True, help="what it was trained on, and how long (for the zoo table)")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--default", action="store_true", help="the model maskrcnnpp-predict uses with no config")
    parser.add_argument("--root", default=ROOT, help="the zoo folder (default: the package's)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="the KEY VALUE overrides it was trained with")
    return parser


def _export(args):
    if not args.name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--name {args.name!r}: use letters, digits, '_' and '-' only")
    cfg = load_cfg(args.config_file, args.opts)
    cfg.MODEL.WEIGHTS = ""  # the zoo's config names no file; maskrcnnpp://<name> is given when loading
    cfg.MODEL.SIZE_HEAD.WEIGHTS = ""
    if args.default:
        others = [n for n in list_models() if n != args.name and model_info(n).get("default")]
        if others and args.root == ROOT:
            raise UserError(f"--default: {others[0]} is the default model already; unmark it in its model.json first")
    folder = export_model(args.name, cfg, args.weights, {"training": args.training, "command": args.command},
                          default=args.default, root=args.root, size_head=args.size_head or None)
    print(f"wrote {folder}")
    return 0


def main(argv=None):
    return run_command(_export, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
