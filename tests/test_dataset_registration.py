"""Registration of the DSB2018 datasets in Detectron2's catalogs."""
import json
import os
import subprocess
import sys

import maskrcnnpp  # noqa: F401  (registers the datasets)
from detectron2.data import DatasetCatalog, MetadataCatalog
from maskrcnnpp.data import sample_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _json(split):
    with open(os.path.join(sample_dir(), "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_sample_registers_and_loads():
    expected = {s: _json(s) for s in ("train", "val")}
    for name, splits in (("dsb2018_sample_train", ["train"]), ("dsb2018_sample_val", ["val"]), ("dsb2018_sample", ["train", "val"])):
        records = DatasetCatalog.get(name)
        assert len(records) == sum(len(expected[s]["images"]) for s in splits)
        assert sum(len(r["annotations"]) for r in records) == sum(len(expected[s]["annotations"]) for s in splits)
        assert all(os.path.isfile(r["file_name"]) for r in records)
        assert {r["modality"] for r in records} == {"grey", "colour"}
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["nucleus"] and meta.evaluator_type == "nuclei"
        assert os.path.isdir(meta.image_root)
    assert MetadataCatalog.get("dsb2018_sample_val").json_file.endswith("instances_val.json")
    assert len(DatasetCatalog.get("dsb2018_sample")) == 12


def test_sample_annotations_are_usable_masks():
    record = DatasetCatalog.get("dsb2018_sample_val")[0]
    ann = record["annotations"][0]
    assert ann["category_id"] == 0  # contiguous id of "nucleus"
    assert isinstance(ann["segmentation"], dict) and ann["segmentation"]["size"] == [record["height"], record["width"]]
    x, y, w, h = ann["bbox"]
    assert 0 <= x < record["width"] and 0 <= y < record["height"] and w > 0 and h > 0


def test_all_dataset_names_registered():
    names = set(DatasetCatalog.list())
    for split in ("train", "val", "test"):
        assert {f"dsb2018_{split}", f"dsb2018_{split}_fixed"} <= names


def test_missing_prepared_dataset_names_path_and_command(tmp_path):
    # A fresh process: the datasets root is read from $DETECTRON2_DATASETS when registering.
    code = (
        "import json, maskrcnnpp\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        "out = {'json_file': MetadataCatalog.get('dsb2018_val_fixed').json_file}\n"
        "for name in ('dsb2018_train', 'dsb2018_val_fixed'):\n"
        "    try:\n"
        "        DatasetCatalog.get(name)\n"
        "    except FileNotFoundError as e:\n"
        "        out[name] = str(e)\n"
        "print(json.dumps(out))\n"
    )
    root = str(tmp_path / "empty_root")
    env = dict(os.environ, DETECTRON2_DATASETS=root, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["json_file"] == os.path.join(root, "dsb2018_fixed", "annotations", "instances_val.json")
    missing = os.path.join(root, "dsb2018", "annotations", "instances_train.json")
    assert f"{missing} does not exist" in out["dsb2018_train"]
    assert f"maskrcnnpp-prepare-dsb2018 --source /path/to/stage1_train.zip --output-root {root}" in out["dsb2018_train"]
    assert "stage1_train_fixed.zip" in out["dsb2018_val_fixed"] and "--fixed" in out["dsb2018_val_fixed"]
