"""configs/lazy/: Mask R-CNN++ as a LazyConfig on Detectron2's own baseline, trained and evaluated
by tools/lazyconfig_train_net.py's functions (maskrcnnpp.engine.lazy_training)."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import instantiate
from omegaconf import OmegaConf

from maskrcnnpp.compat import has_compiled_ops
from maskrcnnpp.data.synthetic_coco import register_synthetic_coco, write_synthetic_coco
from maskrcnnpp.engine.lazy_training import load_lazy_config, train
from maskrcnnpp.modeling.nested_fpn import NestedFPN

LAZY = "configs/lazy/mask_rcnn_R_50_NestedFPN_1x.py"
BASELINE = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py"


def plain(node):
    return OmegaConf.to_container(node, resolve=False)


def test_lazy_config_is_detectron2s_baseline_with_the_nested_backbone(repo_root):
    cfg, baseline = load_lazy_config(os.path.join(repo_root, LAZY)), model_zoo.get_config(BASELINE)
    data = plain(cfg.dataloader)
    assert data["evaluator"].pop("use_fast_impl") == has_compiled_ops()  # set by the load: a compat guard
    assert data == plain(baseline.dataloader)
    for section in ("optimizer", "lr_multiplier", "train"):
        assert plain(cfg[section]) == plain(baseline[section]), section
    ours, theirs = plain(cfg.model), plain(baseline.model)
    assert ours.pop("backbone")["bottom_up"] == theirs.pop("backbone")["bottom_up"]
    assert ours == theirs  # heads, pixel statistics, input format: Detectron2's


def test_instantiated_backbone_is_the_nested_fpn_with_fpns_outputs(repo_root):
    cfg, baseline = load_lazy_config(os.path.join(repo_root, LAZY)), model_zoo.get_config(BASELINE)
    nested, fpn = instantiate(cfg.model.backbone), instantiate(baseline.model.backbone)
    assert isinstance(nested, NestedFPN)
    assert {k: (s.channels, s.stride) for k, s in nested.output_shape().items()} == \
        {k: (s.channels, s.stride) for k, s in fpn.output_shape().items()}


def test_lazy_config_trains_and_evaluates_on_synthetic_coco(repo_root, tmp_path):
    root = str(tmp_path / "data")
    write_synthetic_coco(root, images=(4, 2), size=(128, 160))
    register_synthetic_coco(root)
    cfg = load_lazy_config(os.path.join(repo_root, LAZY), [
        "train.device=cpu", "train.max_iter=2", "train.init_checkpoint=", f"train.output_dir={tmp_path / 'out'}",
        "dataloader.train.dataset.names=synthetic_coco_train", "dataloader.test.dataset.names=synthetic_coco_val",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
        "dataloader.train.mapper.augmentations.0.max_size=160",
        "dataloader.test.mapper.augmentations.0.short_edge_length=128",
        "dataloader.test.mapper.augmentations.0.max_size=160",
    ])
    torch.manual_seed(0)
    trainer = train(cfg)
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 2 and all(np.isfinite(v) for v, _ in losses)
    assert "bbox/AP" in trainer.storage.histories()  # the evaluation after the last iteration ran
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config-file", "no_such_config.py"], "no_such_config.py: config file not found"),
        (["--config-file", LAZY, "train.max_iters=1"], "config override 'train.max_iters=1': train has no key 'max_iters' (did you mean max_iter"),
        (["--config-file", LAZY, "dataloader.train.mapper.augmentations.5=1"],
         "dataloader.train.mapper.augmentations is a list of 2; '5' is not an index"),
        (["--config-file", LAZY], "train.device is cuda but no CUDA GPU is available here; add train.device=cpu"),
    ],
)
def test_lazy_entry_point_errors_are_one_line(repo_root, capsys, monkeypatch, fresh_loggers, argv, message):
    if "train.device" in message and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(repo_root)
    spec = importlib.util.spec_from_file_location("lazy_entry", os.path.join(repo_root, "tools", "lazyconfig_train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2 and len(lines) == 1 and "Traceback" not in err
    assert message in lines[0]
