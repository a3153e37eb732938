"""INPUT.SCALE_POLICY diameter with the real Mask R-CNN++ (random weights, a few iterations):
the training loader's crops, tools/predict.py --diameter in tiles, and the estimate."""
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from PIL import Image

from maskrcnnpp.data import synthetic
from maskrcnnpp.data.diameter import fill_missing_diameters
from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.predict.cli import main
from maskrcnnpp.predict.outputs import read_label_image

CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
SCALE = [
    "INPUT.SCALE_POLICY", "diameter", "INPUT.NUCLEUS_DIAMETER", "17.0",
    "INPUT.DIAMETER_CROP_SIZE", "96", "TEST.TILE_SIZE", "256", "TEST.TILE_OVERLAP", "40",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "20",
]


def test_training_iterations_see_fixed_size_crops(repo_root, tmp_path):
    records = synthetic.make_dataset(str(tmp_path / "img"), num_images=4, size=(200, 260))
    fill_missing_diameters(records)
    name = "scale_policy_train_crops"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(thing_classes=["nucleus"])
    cfg = load_cfg(
        os.path.join(repo_root, CONFIG),
        SCALE + [
            "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "2",
            "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.IMS_PER_BATCH", "2", "OUTPUT_DIR", str(tmp_path / "run"),
        ],
    )
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert [tuple(item["image"].shape[1:]) for item in batch] == [(96, 96), (96, 96)]
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_predict_with_diameter_and_with_the_estimate(repo_root, tmp_path, capsys):
    torch.manual_seed(0)
    cfg = load_cfg(os.path.join(repo_root, CONFIG), SCALE)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("random")
    # Small: random weights send the estimate to small diameters (4-5 px), i.e. a ~4x upscale.
    image, _ = synthetic.make_image(np.random.default_rng(0), 150, 170, max_nuclei=8)
    Image.fromarray(image).save(tmp_path / "cells.png")
    common = ["--config-file", os.path.join(repo_root, CONFIG), "--input", str(tmp_path / "cells.png"),
              "--score-threshold", "0", "--no-progress"]
    overrides = ["MODEL.WEIGHTS", str(tmp_path / "random.pth")] + SCALE

    assert main(common + ["--output", str(tmp_path / "given"), "--diameter", "10"] + overrides) == 0
    labels = read_label_image(tmp_path / "given" / "labels" / "cells.png")
    assert labels.shape == (150, 170) and labels.max() > 0  # random weights, threshold 0: some nuclei

    assert main(common + ["--output", str(tmp_path / "estimated")] + overrides) == 0
    assert read_label_image(tmp_path / "estimated" / "labels" / "cells.png").shape == (150, 170)

    assert main(common + ["--output", str(tmp_path / "absurd"), "--diameter", "5000"] + overrides) == 1
    err = capsys.readouterr().err
    assert any("--diameter" in line and "cells.png" in line for line in err.splitlines() if line.startswith("error:"))
