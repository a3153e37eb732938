"""model_best.pth follows the best evaluation across --resume, and TEST.PATIENCE ends training early.

The evaluations are scripted (a Trainer whose test returns given scores) so the best iteration is
known; the training itself is a tiny semantic UNet++ on synthetic nuclei."""
import logging
import os

import pytest
import torch

from maskrcnnpp.data import synthetic
from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.best_checkpoint import read_best_record
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import ConfigError, UserError

from test_trainer import SMALL_FILTERS, register

NAME = "synthetic_best_checkpoint"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    records = synthetic.make_dataset(str(tmp_path_factory.mktemp("img")), num_images=4, size=(64, 80))
    register(NAME, records, evaluator_type="nuclei")
    return NAME


def tiny_cfg(repo_root, output_dir, max_iter, *opts):
    return load_cfg(os.path.join(repo_root, "configs", "nuclei", "unet_cpu.yaml"), [
        "DATASETS.TRAIN", f"('{NAME}',)", "DATASETS.TEST", f"('{NAME}',)",
        "MODEL.UNETPP.FILTERS", str(SMALL_FILTERS), "MODEL.UNETPP.PATCH_SIZE", "48",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "5", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "5", "TEST.BEST_METRIC", "nuclei/fg_iou", "SEED", "1", "OUTPUT_DIR", str(output_dir),
        *opts,
    ])


def scripted(scores, key="fg_iou"):
    """A Trainer whose evaluations return ``scores`` in turn (each as {"nuclei": {key: score}})."""
    queue = list(scores)

    class ScriptedTrainer(Trainer):
        @classmethod
        def test(cls, cfg, model, evaluators=None):
            return {"nuclei": {key: queue.pop(0)}}

    return ScriptedTrainer


def train(trainer_class, cfg, resume):
    trainer = trainer_class(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def saved_iteration(path):
    return torch.load(path, map_location="cpu", weights_only=False)["iteration"]


def test_model_best_holds_the_weights_of_the_best_evaluation(repo_root, tmp_path, dataset):
    out = tmp_path / "run"
    train(scripted([50.0, 70.0, 60.0]), tiny_cfg(repo_root, out, 15), resume=False)
    assert read_best_record(str(out)) == {"metric": "nuclei/fg_iou", "value": 70.0, "iteration": 9}
    best = torch.load(out / "model_best.pth", map_location="cpu", weights_only=False)
    assert best["iteration"] == 9
    at_10 = torch.load(out / "model_0000009.pth", map_location="cpu", weights_only=False)["model"]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    name = next(k for k in at_10 if k.endswith("weight"))
    assert torch.equal(best["model"][name], at_10[name])
    assert not torch.equal(best["model"][name], final[name])  # training moved on after the best


def test_a_resumed_run_keeps_the_best_of_before(repo_root, tmp_path, dataset):
    out = tmp_path / "run"
    train(scripted([50.0, 70.0]), tiny_cfg(repo_root, out, 10), resume=False)
    # The evaluation after training counts as iteration MAX_ITER, as Detectron2 stores it.
    assert read_best_record(str(out))["iteration"] == 10
    # Longer now: its first evaluation after the resume (40) must not replace the best (70).
    train(scripted([40.0, 65.0]), tiny_cfg(repo_root, out, 20), resume=True)
    assert read_best_record(str(out)) == {"metric": "nuclei/fg_iou", "value": 70.0, "iteration": 10}
    assert saved_iteration(out / "model_best.pth") == 10


def test_patience_ends_training_and_a_resume_treats_the_run_as_finished(repo_root, tmp_path, dataset, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    cfg = tiny_cfg(repo_root, out, 50, "TEST.PATIENCE", "2")
    trainer = train(scripted([50.0, 70.0, 69.0, 68.0] + [90.0] * 6), cfg, resume=False)
    # Evaluated after iterations 5, 10, 15, 20; it stops two evaluations after the best without a better one.
    assert [i for _, i in trainer.storage.history("nuclei/fg_iou").values()] == [4, 9, 14, 19]
    assert read_best_record(str(out))["iteration"] == 9
    assert "training stopped early at iteration 19: 2 evaluations without a better nuclei/fg_iou" in caplog.text
    assert "Exception during training" not in caplog.text
    assert saved_iteration(out / "model_final.pth") == 49
    again = scripted([])(cfg)
    again.resume_or_load(resume=True)
    assert again.start_iter == 50


def test_a_best_metric_the_evaluation_does_not_give_is_named(repo_root, tmp_path, dataset):
    cfg = tiny_cfg(repo_root, tmp_path / "run", 10, "TEST.BEST_METRIC", "nuclei/fg_iuo")
    with pytest.raises(UserError, match=r"TEST.BEST_METRIC nuclei/fg_iuo: .* gave nuclei/fg_iou"):
        train(scripted([50.0, 60.0]), cfg, resume=False)


def test_a_damaged_best_record_is_named_on_resume(repo_root, tmp_path, dataset):
    out = tmp_path / "run"
    train(scripted([50.0, 70.0]), tiny_cfg(repo_root, out, 10), resume=False)
    (out / "model_best.json").write_text("{\"metric\": ")
    with pytest.raises(UserError, match="model_best.json: not a best-checkpoint record"):
        train(scripted([40.0, 65.0]), tiny_cfg(repo_root, out, 20), resume=True)


@pytest.mark.parametrize("opts, message", [
    (["TEST.EVAL_PERIOD", "0"], "TEST.BEST_METRIC needs evaluations during training"),
    (["TEST.BEST_METRIC", "", "TEST.PATIENCE", "3"], "TEST.PATIENCE counts evaluations without a better TEST.BEST_METRIC"),
    (["TEST.PATIENCE", "-1"], "TEST.PATIENCE must be a whole number of at least 0"),
])
def test_best_checkpoint_keys_that_cannot_work_are_named(repo_root, tmp_path, opts, message):
    with pytest.raises(ConfigError, match=message):
        tiny_cfg(repo_root, tmp_path, 10, *opts)

