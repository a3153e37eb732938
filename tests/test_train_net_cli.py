"""tools/train_net.py as a user runs it: train on the embedded sample, then --eval-only."""
import json
import os
import subprocess
import sys

SMALL = [
    "DATASETS.TRAIN", "('dsb2018_sample_train',)", "DATASETS.TEST", "('dsb2018_sample_val',)",
    # plumbing at 128 px: resize by image size (a barely trained model's diameter estimate is junk)
    "INPUT.SCALE_POLICY", "image_size", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
    "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
    # an untrained model's hundreds of junk detections per image cost minutes to score
    "TEST.DETECTIONS_PER_IMAGE", "20",
]


def run(repo_root, *args):
    cmd = [sys.executable, os.path.join(repo_root, "tools/train_net.py"),
           "--config-file", os.path.join(repo_root, "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"),
           *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_train_then_eval_only(repo_root, tmp_path):
    out = tmp_path / "run"
    run(repo_root, *SMALL, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(out))
    assert (out / "model_final.pth").is_file()
    assert (out / "metrics.json").is_file()
    metrics = json.loads((out / "inference/dsb2018_sample_val/nuclei_metrics.json").read_text())
    assert metrics["summary"]["num_images"] == 4

    eval_out = tmp_path / "eval"
    result = run(repo_root, "--eval-only", *SMALL, "MODEL.WEIGHTS", str(out / "model_final.pth"),
                 "OUTPUT_DIR", str(eval_out))
    assert "fg_iou" in result.stdout + result.stderr
    assert (eval_out / "inference/dsb2018_sample_val/nuclei_metrics.json").is_file()
