"""The val-curve job: a run's periodic evaluations read back from its metrics.json."""
import json

import pytest

from benchmarks import val_curve
from maskrcnnpp.errors import UserError


def write_metrics(folder, records, tail=""):
    with open(folder / "metrics.json", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_one_row_per_evaluation_the_last_of_a_repeated_iteration_kept(tmp_path):
    write_metrics(tmp_path, [
        {"iteration": 19, "total_loss": 1.0},
        {"iteration": 999, "nuclei/fg_iou": 70.0, "nuclei/dsb_map": 0.30, "segm/AP": 35.0, "bbox/AP": float("nan")},
        {"iteration": 1999, "fg_iou": 72.0, "dsb_map": 0.33},
        {"iteration": 1999, "fg_iou": 73.5, "dsb_map": 0.34},  # evaluated again after a resume
    ])
    rows = val_curve.evaluations(str(tmp_path))
    assert [i for i, _ in rows] == [1000, 2000]
    assert rows[0][1]["fg_iou"] == 70.0 and rows[0][1]["bbox/AP"] is None
    assert rows[1][1]["fg_iou"] == 73.5 and rows[1][1]["segm/AP"] is None
    text = val_curve.render(str(tmp_path), rows, "python -m benchmarks val-curve run")
    # fg Dice and bbox AP in no record: no column; segm AP only in the first: an empty cell.
    assert "| iteration | fg IoU (%) | DSB mAP | segm AP |" in text
    assert "| 1000 | 70.00 | 0.300 | 35.0 |" in text and "| 2000 | 73.50 | 0.340 |  |" in text


def test_a_half_written_line_and_a_missing_file_are_named(tmp_path):
    write_metrics(tmp_path, [{"iteration": 999, "fg_iou": 70.0}], tail='{"iteration": 10')
    with pytest.raises(UserError, match="metrics.json: line 2 is not JSON"):
        val_curve.evaluations(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        val_curve.evaluations(str(tmp_path / "nowhere"))


def test_the_evaluation_after_training_counts_max_iter_iterations(tmp_path):
    (tmp_path / "config.yaml").write_text("SOLVER:\n  MAX_ITER: 3000\n")
    write_metrics(tmp_path, [{"iteration": 999, "fg_iou": 70.0}, {"iteration": 1999, "fg_iou": 71.0},
                             {"iteration": 3000, "fg_iou": 74.0}])
    assert [i for i, _ in val_curve.evaluations(str(tmp_path))] == [1000, 2000, 3000]


def test_the_report_says_what_the_run_trained_and_which_checkpoint_is_best(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "MODEL:\n  META_ARCHITECTURE: SemanticUNetPlusPlus\n  UNETPP:\n    NORM: ''\n    CONNECTIVITY: unet\n"
        "DATASETS:\n  TRAIN: [dsb2018_train]\n  TEST: [dsb2018_val]\n"
        "SOLVER:\n  OPTIMIZER: ADAM\n  BASE_LR: 0.001\n  IMS_PER_BATCH: 8\n  STEPS: []\n  MAX_ITER: 3000\nSEED: 0\n")
    write_metrics(tmp_path, [{"iteration": 999, "nuclei/fg_iou": 70.0}, {"iteration": 1999, "nuclei/fg_iou": 74.0}])
    (tmp_path / "model_best.json").write_text('{"metric": "nuclei/fg_iou", "value": 74.0, "iteration": 1999}')
    text = val_curve.render(str(tmp_path), val_curve.evaluations(str(tmp_path)), "cmd")
    assert ("- trained: SemanticUNetPlusPlus (unet) on dsb2018_train, evaluated on dsb2018_val; ADAM at 0.001, batch 8, "
            "steps [], max_iter 3000, seed 0, norm none") in text
    assert "- model_best.pth: nuclei/fg_iou 74.00 after 2000 iterations" in text
    assert "| iteration | fg IoU (%) |\n" in text
