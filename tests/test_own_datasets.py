"""Datasets by name: folders under $DETECTRON2_DATASETS registered as NAME_<split>, and the
grey/colour subsets of every registered nuclei dataset."""
import json
import os
import subprocess
import sys
import uuid

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from label_pairs import write_sample_pairs
from maskrcnnpp.data.datasets import register_own_datasets
from maskrcnnpp.data.import_labels import import_labels
from maskrcnnpp.engine.setup import check_datasets, load_cfg
from maskrcnnpp.errors import ConfigError, UserError

CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A datasets root holding the sample imported under a name no other test uses."""
    folder = tmp_path_factory.mktemp("datasets")
    name = "own" + uuid.uuid4().hex[:8]
    import_labels(*write_sample_pairs(str(tmp_path_factory.mktemp("pairs"))), name, output_root=str(folder))
    return folder, name


def test_a_set_imported_after_import_is_found_by_name(root, repo_root, monkeypatch):
    folder, name = root
    monkeypatch.setenv("DETECTRON2_DATASETS", str(folder))
    assert f"{name}_train" not in DatasetCatalog.list()  # imported after the package registered
    cfg = load_cfg(os.path.join(repo_root, CONFIG), ["DATASETS.TRAIN", f"('{name}_train',)",
                                                     "DATASETS.TEST", f"('{name}_test',)"])
    check_datasets(cfg)  # rescans the root instead of calling the name unknown
    metadata = MetadataCatalog.get(f"{name}_train")
    assert metadata.evaluator_type == "nuclei" and metadata.thing_classes == ["nucleus"]
    assert metadata.json_file == os.path.join(str(folder), name, "annotations", "instances_train.json")
    records = DatasetCatalog.get(f"{name}_train")
    assert len(records) == 10 and sum(len(r["annotations"]) for r in records) > 0
    assert {r["modality"] for r in records} == {"grey", "colour"}
    assert all(r["median_diameter"] > 0 and r["image_key"] for r in records)
    assert register_own_datasets(str(folder)) == []  # a second scan registers nothing new


def test_registration_reads_no_json_and_skips_builtin_and_hidden_folders(tmp_path):
    name = "lazy" + uuid.uuid4().hex[:8]
    for folder in (name, "dsb2018", "dsb2018_fixed", ".hidden", "noannotations"):
        os.makedirs(tmp_path / folder / ("annotations" if folder != "noannotations" else "images"))
    os.makedirs(tmp_path / name / "images")
    (tmp_path / name / "annotations" / "instances_train.json").write_text("{ not JSON")
    (tmp_path / name / "annotations" / "notes.txt").write_text("")
    for folder in ("dsb2018", "dsb2018_fixed", ".hidden"):
        (tmp_path / folder / "annotations" / "instances_train.json").write_text("{}")
    assert register_own_datasets(str(tmp_path)) == [f"{name}_train"]
    assert {f"{name}_train_grey", f"{name}_train_colour"} <= set(DatasetCatalog.list())
    with pytest.raises(UserError, match="instances_train.json: damaged annotation file, not valid JSON"):
        DatasetCatalog.get(f"{name}_train")  # the broken file is read only when the dataset is loaded


def test_grey_and_colour_subsets_of_the_builtin_datasets():
    names = set(DatasetCatalog.list())
    for split in ("train", "val", "test"):
        for modality in ("grey", "colour"):
            assert {f"dsb2018_{split}_{modality}", f"dsb2018_{split}_fixed_{modality}"} <= names
    whole = DatasetCatalog.get("dsb2018_sample_train")
    grey, colour = DatasetCatalog.get("dsb2018_sample_train_grey"), DatasetCatalog.get("dsb2018_sample_train_colour")
    assert grey and colour and len(grey) + len(colour) == len(whole)
    assert {r["modality"] for r in grey} == {"grey"} and {r["modality"] for r in colour} == {"colour"}
    assert sorted(r["image_id"] for r in grey + colour) == sorted(r["image_id"] for r in whole)
    metadata = MetadataCatalog.get("dsb2018_sample_train_colour")
    # No json_file: it holds the grey images too, so COCOEvaluator must convert the subset itself.
    assert metadata.get("json_file", None) is None and metadata.json_files[0].endswith("instances_train.json")
    assert metadata.evaluator_type == "nuclei"


def test_unknown_name_is_one_line_naming_both_ways_to_get_data(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    cfg = load_cfg(os.path.join(repo_root, CONFIG), ["DATASETS.TRAIN", "('nosuchset_train',)"])
    with pytest.raises(ConfigError) as error:
        check_datasets(cfg)
    message = str(error.value)
    assert "nosuchset_train" in message and "import_labels.py" in message and len(message.splitlines()) == 1


def test_the_imported_set_trains_by_name_with_no_python(root, repo_root, tmp_path):
    folder, name = root
    out = tmp_path / "run"
    cmd = [
        sys.executable, os.path.join(repo_root, "tools/train_net.py"), "--config-file", os.path.join(repo_root, CONFIG),
        "DATASETS.TRAIN", f"('{name}_train',)", "DATASETS.TEST", f"('{name}_val', '{name}_train_colour')",
        "INPUT.SCALE_POLICY", "image_size", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
        "INPUT.MIN_SIZE_TEST", "128",
        "INPUT.MAX_SIZE_TEST", "256", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "2", "TEST.DETECTIONS_PER_IMAGE", "20", "OUTPUT_DIR", str(out),
    ]
    env = dict(os.environ, DETECTRON2_DATASETS=str(folder))
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    val = json.loads((out / "inference" / f"{name}_val" / "nuclei_metrics.json").read_text())
    assert val["summary"]["num_images"] == 1
    colour = json.loads((out / "inference" / f"{name}_train_colour" / "nuclei_metrics.json").read_text())
    train = json.loads((folder / name / "annotations" / "instances_train.json").read_text())
    assert colour["summary"]["num_images"] == sum(i["modality"] == "colour" for i in train["images"])


def test_ground_truth_of_an_imported_subset_scores_perfectly(root, monkeypatch):
    from maskrcnnpp.evaluation.gt_as_predictions import check_available, evaluate_gt

    folder, name = root
    monkeypatch.setenv("DETECTRON2_DATASETS", str(folder))
    assert check_available([f"{name}_train_grey"]) is None  # found by a rescan if not yet registered
    assert "nuclei datasets" in check_available(["nosuchset_val"])
    results, _ = evaluate_gt(f"{name}_train_grey")  # COCO AP from the subset's own dicts, not the file
    assert results["nuclei"]["fg_iou"] == pytest.approx(100.0) and results["nuclei"]["dsb_map"] == pytest.approx(1.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)
