"""Mask R-CNN++ built from the CPU config: it learns, checkpoints round-trip, training resumes."""
import json
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

import synthetic
from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg


def small_cfg(repo_root, output_dir, dataset, max_iter):
    cfg = load_cfg(
        os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"),
        [
            "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", "()",
            "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
            "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "5",
            "SOLVER.BASE_LR", "0.01", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "10",
            "DATALOADER.NUM_WORKERS", "0", "SEED", "1", "OUTPUT_DIR", str(output_dir),
        ],
    )
    return cfg


def register(name, records):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["nucleus"])


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_loss_falls_and_training_resumes_from_the_last_checkpoint(repo_root, tmp_path):
    register("synthetic_nuclei_train", synthetic.make_dataset(str(tmp_path / "img"), num_images=8))
    out = tmp_path / "run"
    cfg = small_cfg(repo_root, out, "synthetic_nuclei_train", max_iter=30)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 30
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, losses
    # Detectron2's writers logged the run.
    assert any("total_loss" in r for r in read_metrics(out))
    assert (out / "model_final.pth").is_file() and (out / "last_checkpoint").is_file()
    assert list(out.glob("events.out.tfevents.*"))

    # A resumed run starts where the last one stopped, not at iteration 0.
    cfg = small_cfg(repo_root, out, "synthetic_nuclei_train", max_iter=35)
    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 30


def test_saved_checkpoint_loads_to_identical_outputs(repo_root, tmp_path):
    cfg = small_cfg(repo_root, tmp_path, "unused", max_iter=1)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # random weights: keep every detection
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("weights")

    torch.manual_seed(1)
    other = build_model(cfg).eval()
    image = torch.from_numpy(synthetic.make_image(np.random.default_rng(3), 128, 160)[0])
    inputs = [{"image": image.permute(2, 0, 1).contiguous(), "height": 128, "width": 160}]
    with torch.no_grad():
        before = model(inputs)[0]["instances"]
        differs = other(inputs)[0]["instances"]
    assert len(differs) != len(before) or not torch.equal(differs.scores, before.scores)

    DetectionCheckpointer(other).load(str(tmp_path / "weights.pth"))
    with torch.no_grad():
        after = other(inputs)[0]["instances"]
    assert len(before) > 0
    assert torch.equal(after.pred_boxes.tensor, before.pred_boxes.tensor)
    assert torch.equal(after.scores, before.scores)
    assert torch.equal(after.pred_masks, before.pred_masks)
