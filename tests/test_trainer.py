"""The Trainer on the CPU configs: Mask R-CNN++ learns and resumes, its checkpoint holds every
weight, and a semantic UNet++ trains and is evaluated on the foreground."""
import json
import os

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from maskrcnnpp.data import synthetic
from maskrcnnpp.data.semantic_mapper import foreground_mask
from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.evaluation import foreground_iou_dice

SMALL_FILTERS = [4, 8, 8, 16, 16]


def small_cfg(repo_root, output_dir, dataset, max_iter):
    cfg = load_cfg(
        os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"),
        [
            "DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", "()",
            "INPUT.SCALE_POLICY", "image_size", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
            "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
            "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "5",
            "SOLVER.BASE_LR", "0.01", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "10",
            "DATALOADER.NUM_WORKERS", "0", "SEED", "1", "OUTPUT_DIR", str(output_dir),
        ],
    )
    return cfg


def register(name, records, **metadata):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["nucleus"], **metadata)


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


def test_the_checkpoint_of_mask_rcnn_pp_holds_all_it_computes_with(repo_root, tmp_path):
    # A differently initialised model that loads it must give identical outputs: no weight or
    # buffer of the nested FPN lives outside the state dict.
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


def test_trainer_trains_and_evaluates_a_semantic_config(repo_root, tmp_path):
    records = synthetic.make_dataset(str(tmp_path / "img"), num_images=4, size=(64, 80))
    name = "synthetic_semantic_nuclei"
    register(name, records, evaluator_type="nuclei")
    cfg = load_cfg(
        os.path.join(repo_root, "configs", "nuclei", "unetpp_ds_cpu.yaml"),
        [
            "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)",
            "MODEL.UNETPP.FILTERS", str(SMALL_FILTERS), "MODEL.UNETPP.PATCH_SIZE", "48",
            "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "30", "SOLVER.BASE_LR", "0.003",
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
            "SEED", "1", "OUTPUT_DIR", str(tmp_path / "run"),
        ],
    )
    trainer = Trainer(cfg)
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    results = Trainer.test(cfg, trainer.model)["nuclei"]
    assert results["num_images"] == 4

    # The evaluator's figure is the mean over images of the IoU of the map >= 0.5 with the
    # union of the image's nuclei, in percent; and the model beats calling every pixel a nucleus.
    model, ious, everything = trainer.model.eval(), [], []
    with torch.no_grad():
        for inputs, record in zip(Trainer.build_test_loader(cfg, name), records):
            assert inputs[0]["image_id"] == record["image_id"]
            truth = foreground_mask(record["annotations"], record["height"], record["width"]) > 0
            ious.append(foreground_iou_dice(model(inputs)[0]["sem_seg"][0].numpy() >= 0.5, truth)[0])
            everything.append(foreground_iou_dice(np.ones_like(truth), truth)[0])
    assert results["fg_iou"] == pytest.approx(100 * np.mean(ious))
    assert results["fg_iou"] > 100 * np.mean(everything)
