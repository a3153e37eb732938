"""Training and evaluation of LazyConfig Python configs (``configs/lazy/*.py``), with the config
layout of Detectron2's LazyConfig baselines: ``model``, ``dataloader.{train,test,evaluator}``,
``optimizer``, ``lr_multiplier`` and ``train`` (output_dir, init_checkpoint, max_iter, amp, ddp,
checkpointer, eval_period, log_period, device).

Checkpoints are written atomically and resumed as in ``tools/train_net.py`` (NucleiCheckpointer).
"""
import difflib
import logging

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, create_ddp_model, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from omegaconf import OmegaConf

from ..compat import has_compiled_ops
from ..errors import UserError, error_reason
from .checkpoint import NucleiCheckpointer
from .trainer import train_or_explain

__all__ = ["evaluate", "load_lazy_config", "train"]

logger = logging.getLogger(__name__)
_SECTIONS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")


def load_lazy_config(path, overrides=()):
    """The LazyConfig at ``path`` with ``key=value`` overrides; UserError naming the file or key."""
    try:
        cfg = LazyConfig.load(path)
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except Exception as e:  # the file is Python: any error of its own
        raise UserError(f"{path}: cannot load the LazyConfig ({type(e).__name__}: {error_reason(e)})") from None
    missing = [s for s in _SECTIONS if s not in cfg]
    if missing:
        raise UserError(f"{path}: a LazyConfig to train needs {', '.join(_SECTIONS)}; it has no {', '.join(missing)}")
    for override in overrides:
        _check_override_key(cfg, override)
    try:
        cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    except Exception as e:  # omegaconf / Detectron2's parser on a bad key=value
        raise UserError(f"config override: {type(e).__name__}: {error_reason(e)}") from None
    evaluator = cfg.dataloader.get("evaluator")
    target = getattr(evaluator, "_target_", None) if evaluator is not None else None
    if "COCOEvaluator" in str(getattr(target, "__name__", target)) and "use_fast_impl" not in evaluator:
        evaluator.use_fast_impl = has_compiled_ops()  # its fast COCO API needs Detectron2's compiled ops
    return cfg


def _check_override_key(cfg, override):
    """A key=value override must name an existing key, or a new argument of a LazyCall: a typo
    in a plain setting (train.max_iters=...) would otherwise add a key nothing reads."""
    key, equals, _ = override.partition("=")
    if not equals:
        raise UserError(f"config override {override!r}: overrides of a LazyConfig are key=value")
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if node is None or not OmegaConf.is_config(node):
        raise UserError(f"config override {override!r}: the config has no {parent or key}")
    if OmegaConf.is_list(node):
        if not (leaf.isdigit() and int(leaf) < len(node)):
            raise UserError(f"config override {override!r}: {parent} is a list of {len(node)}; {leaf!r} is not an index")
        return
    if leaf not in node and "_target_" not in node:
        close = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"config override {override!r}: {parent or 'the config'} has no key {leaf!r}{hint}")


def evaluate(cfg, model):
    """``dataloader.evaluator`` on ``dataloader.test``; {} when the config has no evaluator."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def train(cfg, resume=False):
    """Train ``cfg.model`` for ``cfg.train.max_iter`` iterations (continuing from the last
    checkpoint with ``resume``), evaluating every ``train.eval_period`` and at the end."""
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, loader, optimizer)
    checkpointer = NucleiCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: evaluate(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    train_or_explain(trainer, cfg.train.output_dir, start, cfg.train.max_iter, hint="lower optimizer.lr")
    return trainer
