"""Config assembly shared by the command-line tools, with one-line errors for user mistakes."""
import difflib
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup, launch

from ..config import check_device
from ..config_loading import check_config, load_cfg
from ..data.datasets import is_registered
from ..errors import ConfigError, MissingFileError, run_command
from .checkpoint import read_checkpoint
from .output_dir import hold_output_dir

__all__ = ["check_config", "check_datasets", "check_weights", "checked_cfg", "launch_locked", "load_cfg", "setup_cfg"]

_CLOSE_MATCHES = 3


def check_datasets(cfg, keys=("TRAIN", "TEST")):
    """Every name in DATASETS.<key> must be registered, and its files present (checked
    before training, not when evaluation first reads the test set); a nuclei dataset's
    records and images are read and checked too. An unknown name first rescans
    $DETECTRON2_DATASETS, for a set imported after the package was imported."""
    for key in keys:
        for name in cfg.DATASETS[key]:
            if is_registered(name):
                _check_dataset_files(key, name)
                if MetadataCatalog.get(name).get("evaluator_type", None) == "nuclei":
                    DatasetCatalog.get(name)  # reads and checks every record and image file now
                continue
            registered = DatasetCatalog.list()
            close = difflib.get_close_matches(name, registered, n=_CLOSE_MATCHES, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"DATASETS.{key}: unknown dataset {name!r} ({hint}{len(registered)} datasets are registered; "
                "DSB2018 needs `python tools/prepare_dsb2018.py` first, your own label images "
                "`python tools/import_labels.py`, see the README)"
            )


def _check_dataset_files(key, name):
    metadata = MetadataCatalog.get(name)
    paths = list(metadata.get("json_files", [])) + [metadata.get("json_file", None), metadata.get("image_root", None)]
    for path in filter(None, paths):
        if not os.path.exists(path):
            raise MissingFileError(
                f"DATASETS.{key}: dataset {name!r} is not prepared: {path} does not exist "
                "(DSB2018: run `python tools/prepare_dsb2018.py --source stage1_train.zip`, see the README)"
            )


def check_weights(cfg):
    """MODEL.WEIGHTS, when set, must be a readable checkpoint (read once, early)."""
    if cfg.MODEL.WEIGHTS:
        read_checkpoint(cfg.MODEL.WEIGHTS)


def checked_cfg(args):
    """The config of parsed Detectron2 arguments, its datasets and weights checked (UserError)."""
    cfg = load_cfg(args.config_file, args.opts)
    check_device(cfg.MODEL.DEVICE, args.num_gpus)
    if args.eval_only:
        if not cfg.DATASETS.TEST:
            raise ConfigError("--eval-only: DATASETS.TEST is empty; name the datasets to evaluate, "
                              "e.g. DATASETS.TEST \"('dsb2018_test',)\"")
    else:
        if not cfg.DATASETS.TRAIN:
            raise ConfigError("DATASETS.TRAIN is empty; name the datasets to train on, "
                              "e.g. DATASETS.TRAIN \"('dsb2018_train',)\"")
        world_size = max(1, args.num_gpus * args.num_machines)  # --num-gpus 0 runs on the CPU, as 1
        if cfg.SOLVER.IMS_PER_BATCH % world_size:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must divide evenly among the "
                              f"{world_size} GPUs (--num-gpus {args.num_gpus} x --num-machines {args.num_machines})")
    check_datasets(cfg, ("TEST",) if args.eval_only else ("TRAIN", "TEST"))
    check_weights(cfg)
    return cfg


def setup_cfg(args, cfg=None):
    """Freeze the config of parsed Detectron2 arguments and set up logging/output; ``cfg``: the
    one :func:`checked_cfg` already gave (else it is built and checked here)."""
    cfg = checked_cfg(args) if cfg is None else cfg
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def launch_locked(main, args, cfg, output_dir, key="OUTPUT_DIR"):
    """``main(args, cfg)`` through Detectron2's ``launch`` (``--num-gpus``, ``--num-machines``, ...),
    with ``output_dir`` locked for this run by the first machine's launcher until it exits, so a
    second run on the same folder stops with one line. A UserError anywhere is one line, exit 2."""
    lock = run_command(hold_output_dir, output_dir, key) if args.machine_rank == 0 else None  # noqa: F841
    return run_command(launch, main, args.num_gpus, num_machines=args.num_machines,
                       machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args, cfg))
