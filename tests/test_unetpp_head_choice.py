"""The head-choice job: the UNet++'s inference mode is chosen on val only, test
scores only the chosen mode, and a pruned mode is evaluated with its own (smaller) network."""
import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from benchmarks.__main__ import main
from benchmarks.measure import REPO
from benchmarks.semantic import head_choice as unetpp_head_choice
from benchmarks.semantic.comparison import REPORT
from maskrcnnpp.data import synthetic
from maskrcnnpp.engine import Trainer
from maskrcnnpp.engine.setup import load_cfg
from test_semantic_comparison import fake_record

# val fg IoU per mode and seed: L3 has the best mean (71.0); L4 and the ensemble follow.
VAL = {"L1": (60.0, 61.0), "L2": (68.0, 70.0), "L3": (70.0, 72.0), "L4": (69.0, 71.5), "ensemble": (70.5, 71.0)}


def fake_run(mode, seed, fg_iou, dataset):
    return {"mode": mode, "seed": seed, "dataset": dataset, "weights": "w.pth",
            "parameters": {"L1": 100_000, "L2": 510_000, "L3": 2_210_000}.get(mode, 9_040_000),
            "eval_seconds": 67.0, "metrics": {"fg_iou": fg_iou, "fg_dice": fg_iou + 10,
                                              "fg_iou_pooled": fg_iou - 2, "num_images": 134},
            "threads": 2, "command": "python -m benchmarks head-choice --seeds 0 1", "date": "2026-01-01"}


def val_runs(scores):
    return {m: {s: fake_run(m, s, v, "dsb2018_val") for s, v in enumerate(vs)} for m, vs in scores.items()}


def test_the_best_mean_val_iou_wins_and_a_tie_goes_to_the_cheaper_mode():
    assert unetpp_head_choice.choose(val_runs(VAL), [0, 1]) == "L3"
    tied = dict(VAL, L4=(70.0, 72.0), ensemble=(71.0, 71.0))
    assert unetpp_head_choice.choose(val_runs(tied), [0, 1]) == "L3"
    # A mode missing a seed takes no part, however good its one score.
    partial = val_runs(VAL)
    partial["L2"] = {0: fake_run("L2", 0, 99.0, "dsb2018_val")}
    assert unetpp_head_choice.choose(partial, [0, 1]) == "L3"
    assert unetpp_head_choice.choose({}, [0, 1]) is None


def write_semantic_runs(results_dir, scores):
    runs_dir = results_dir / REPORT
    runs_dir.mkdir()
    for (key, seed), fg in scores.items():
        (runs_dir / f"{key}_seed{seed}.json").write_text(json.dumps(fake_record(key, seed, fg)))


def run_main(tmp_path, monkeypatch, val_scores, test_scores):
    calls = []

    def fake_evaluate(seed, mode, dataset, output_root, threads, command, path):
        calls.append((dataset, mode, seed))
        scores = val_scores if dataset == "dsb2018_val" else test_scores
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(fake_run(mode, seed, scores[mode][seed], dataset), f)

    config = os.path.join(REPO, "configs", "nuclei", "unetpp_ds_cpu.yaml")
    monkeypatch.setattr(unetpp_head_choice, "evaluate", fake_evaluate)
    monkeypatch.setattr(unetpp_head_choice, "trained_model", lambda root, seed: (config, "w.pth"))
    monkeypatch.setattr(unetpp_head_choice, "setup_logger", lambda **kw: None)
    argv = ["head-choice", "--seeds", "0", "1", "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    first = list(calls)
    assert main(argv) == 0 and calls == first  # finished runs are skipped
    return calls, (tmp_path / f"{REPORT}_head_choice.md").read_text()


def test_every_mode_is_scored_on_val_and_only_the_chosen_one_on_test(tmp_path, monkeypatch):
    write_semantic_runs(tmp_path, {("unet", 0): 66.0, ("unet", 1): 69.0,
                                   ("unetpp_ds", 0): 67.0, ("unetpp_ds", 1): 68.0})
    calls, text = run_main(tmp_path, monkeypatch, VAL, {"L3": (70.0, 70.5)})
    modes = ["L1", "L2", "L3", "L4", "ensemble"]
    assert calls == ([("dsb2018_val", m, 0) for m in modes] + [("dsb2018_val", m, 1) for m in modes]
                     + [("dsb2018_test", "L3", 0), ("dsb2018_test", "L3", 1)])
    assert "| L3 | 2.21M | 0, 1 | 71.00 ± 1.41 |" in text
    assert "Chosen on val: **L3**" in text
    assert "| UNet++ DS, L3 (chosen on val) | 2.21M | 0, 1 | 70.25 ± 0.35 |" in text
    assert "UNet++ DS, L3 (chosen on val) − U-Net, fg IoU paired by seed: +2.75 (seed 0 +4.00, seed 1 +1.50)" in text
    assert "UNet++ DS, L3 (chosen on val) − UNet++ (deep supervision, ensemble), fg IoU paired by seed: +2.75" in text


def test_when_the_ensemble_wins_on_val_its_test_row_is_the_comparison_s_own(tmp_path, monkeypatch):
    write_semantic_runs(tmp_path, {("unet", 0): 66.0, ("unet", 1): 69.0,
                                   ("unetpp_ds", 0): 67.0, ("unetpp_ds", 1): 68.0})
    calls, text = run_main(tmp_path, monkeypatch, dict(VAL, ensemble=(72.0, 73.0)), {})
    assert all(dataset == "dsb2018_val" for dataset, _, _ in calls)
    assert "Chosen on val: **ensemble**" in text
    assert "UNet++ DS, ensemble (chosen on val) − U-Net, fg IoU paired by seed: +0.00 (seed 0 +1.00, seed 1 -1.00)" in text


def test_a_missing_trained_model_is_one_line_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["head-choice", "--output-root", str(tmp_path), "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message == (f"error: {tmp_path}/unetpp_ds_seed0/config.yaml: not found; train it first with "
                       "python -m benchmarks semantic --rows unetpp_ds --seeds 0")


def test_a_pruned_mode_is_evaluated_with_its_own_smaller_network(repo_root, tmp_path):
    name = "synthetic_head_choice"
    records = synthetic.make_dataset(str(tmp_path / "img"), num_images=3, size=(64, 80))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["nucleus"], evaluator_type="nuclei")
    cfg = load_cfg(os.path.join(repo_root, "configs", "nuclei", "unetpp_ds_cpu.yaml"),
                   ["MODEL.UNETPP.FILTERS", "[4, 8, 8, 16, 16]", "DATALOADER.NUM_WORKERS", "0"])
    run = tmp_path / "unetpp_ds_seed0"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump())
    model = Trainer.build_model(cfg)
    torch.save({"model": model.state_dict()}, run / "model_final.pth")

    records_by_mode = {}
    for mode in ("L1", "ensemble"):
        path = tmp_path / "results" / f"val_{mode}_seed0.json"
        unetpp_head_choice.evaluate(0, mode, name, str(tmp_path), 1, "cmd", str(path))
        records_by_mode[mode] = json.loads(path.read_text())
    small, full = records_by_mode["L1"], records_by_mode["ensemble"]
    assert full["parameters"] == sum(p.numel() for p in model.parameters())
    assert small["parameters"] == sum(p.numel() for p in model.pruned(1).parameters()) < full["parameters"]
    assert small["metrics"]["num_images"] == full["metrics"]["num_images"] == 3
    assert (small["mode"], small["dataset"], small["seed"]) == ("L1", name, 0)


def test_the_weights_evaluated_are_those_the_semantic_job_scored(repo_root, tmp_path):
    run = tmp_path / "unetpp_ds_seed0"
    run.mkdir()
    (run / "model_final.pth").write_bytes(b"last")
    (run / "model_best.pth").write_bytes(b"best")
    (run / "model_best.json").write_text('{"metric": "nuclei/fg_iou", "value": 70.0, "iteration": 99}')
    config = os.path.join(repo_root, "configs", "nuclei", "unetpp_ds_cpu.yaml")
    for best_metric, chosen in (("", "model_final.pth"), ("nuclei/fg_iou", "model_best.pth")):
        cfg = load_cfg(config, ["TEST.EVAL_PERIOD", "100", "TEST.BEST_METRIC", best_metric, "TEST.PATIENCE", "0"])
        (run / "config.yaml").write_text(cfg.dump())
        assert unetpp_head_choice.trained_model(str(tmp_path), 0) == (str(run / "config.yaml"), str(run / chosen))
