"""Preparation of DSB2018 from a synthetic Kaggle-layout zip / folder (no real data needed)."""
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

import maskrcnnpp  # noqa: F401  (guards before detectron2 imports)
from maskrcnnpp.data import prepare_dsb2018
from maskrcnnpp.data.dsb2018_split import load_split
from maskrcnnpp.data.prepare_dsb2018 import main, prepare
from maskrcnnpp.utils.temp_dirs import make_owned_temp_dir

RNG = np.random.default_rng(0)


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG") if mode else Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _rgba(rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return _png(np.concatenate([rgb, alpha], axis=2))


def _mask(shape, *boxes):
    m = np.zeros(shape, np.uint8)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = 255
    return m


GREY = np.repeat(RNG.integers(0, 256, (20, 24, 1), dtype=np.uint8), 3, axis=2)
COLOUR = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
GREY_MASKS = {"m1.png": _mask((20, 24), (2, 6, 3, 9)), "m2.png": _mask((20, 24), (10, 14, 1, 4), (15, 19, 20, 23))}
COLOUR_MASKS = {f"c{i}.png": _mask((16, 16), (i * 4, i * 4 + 3, 2, 12)) for i in range(3)}
SPLIT = {
    "train": ["grey", "nomasks", "noimages", "truncated", "badsize", "emptymasks", "allzero", "badmask"],
    "val": ["grey_small"],
    "test": ["colour", "missing1"],
}
EXPECTED_SKIPS = {
    "nomasks": "missing masks/ folder",
    "noimages": "missing images/ folder",
    "truncated": "unreadable image PNG",
    "badsize": "mask m.png is 10x10, its image is 16x16",
    "emptymasks": "no masks",
    "allzero": "no non-empty masks",
    "badmask": "unreadable mask m.png PNG",
    "extra": "not in the split file",
}


def _layout():
    """{relative path: bytes}, with None for an empty folder."""
    small = np.repeat(RNG.integers(0, 256, (16, 16, 1), dtype=np.uint8), 3, axis=2)
    files = {"grey/images/grey.png": _rgba(GREY), "colour/images/colour.png": _rgba(COLOUR)}
    files.update({f"grey/masks/{n}": _png(m) for n, m in GREY_MASKS.items()})
    files["grey/masks/zero.png"] = _png(np.zeros((20, 24), np.uint8))  # only this mask is dropped
    files.update({f"colour/masks/{n}": _png(m) for n, m in COLOUR_MASKS.items()})
    ok_mask = _png(_mask((16, 16), (1, 5, 1, 5)))
    for image_id in ("grey_small", "extra", "noimages", "truncated", "badsize", "emptymasks", "allzero", "badmask"):
        files[f"{image_id}/images/{image_id}.png"] = _rgba(small)
        files[f"{image_id}/masks/m.png"] = ok_mask
    files["nomasks/images/nomasks.png"] = _rgba(small)
    del files["noimages/images/noimages.png"]
    files["truncated/images/truncated.png"] = _rgba(small)[:60]
    files["badsize/masks/m.png"] = _png(_mask((10, 10), (1, 5, 1, 5)))
    del files["emptymasks/masks/m.png"]
    files["emptymasks/masks/"] = None
    files["allzero/masks/m.png"] = _png(np.zeros((16, 16), np.uint8))
    files["badmask/masks/m.png"] = b"not a png at all"
    return files


def _write_zip(path, files, top=""):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            if data is None:
                z.writestr(zipfile.ZipInfo(top + name), b"")
            else:
                z.writestr(top + name, data)
    return str(path)


def _write_folder(root, files):
    for name, data in files.items():
        path = os.path.join(root, *name.rstrip("/").split("/"))
        if data is None:
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


@pytest.fixture
def split_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(SPLIT))
    return str(path)


def _coco(output_dir, split):
    with open(os.path.join(output_dir, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_zip_summary_reports_every_bad_input(tmp_path):
    source = _write_zip(tmp_path / "stage1_train.zip", _layout())
    summary = prepare(source, tmp_path / "out" / "dsb2018", SPLIT, progress=False)
    assert summary.images == {"train": 1, "val": 1, "test": 1}
    assert summary.instances == {"train": 2, "val": 1, "test": 3}
    skipped = dict(summary.skipped_images)
    assert set(skipped) == set(EXPECTED_SKIPS)
    for image_id, reason in EXPECTED_SKIPS.items():
        assert skipped[image_id].startswith(reason), (image_id, skipped[image_id])
    assert summary.skipped_masks == [("grey", "zero.png", "all-zero mask")]
    assert summary.missing_ids == [("missing1", "test")]
    text = summary.format()
    assert "WARNING: 1 ids of the split file are not in the source" in text and "missing1 (test)" in text
    assert "truncated: unreadable image PNG" in text


def test_coco_content_and_images(tmp_path):
    out = tmp_path / "dsb2018"
    prepare(_write_zip(tmp_path / "s.zip", _layout()), out, SPLIT, progress=False)
    train, test = _coco(out, "train"), _coco(out, "test")
    assert train["categories"] == [{"id": 1, "name": "nucleus", "supercategory": "nucleus"}]
    (image,) = train["images"]
    assert image["file_name"] == "grey.png" and image["image_key"] == "grey" and image["modality"] == "grey"
    assert (image["height"], image["width"]) == (20, 24)
    assert test["images"][0]["modality"] == "colour"
    # Integer ids follow the sorted split file, whatever the source holds.
    assert image["id"] == sorted(i for ids in SPLIT.values() for i in ids).index("grey") + 1
    expected = [GREY_MASKS["m1.png"], GREY_MASKS["m2.png"]]
    for ann, mask in zip(train["annotations"], expected):
        assert isinstance(ann["segmentation"]["counts"], str)
        decoded = mask_util.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded, mask > 0)
        assert ann["area"] == int((mask > 0).sum()) and ann["iscrowd"] == 0 and ann["category_id"] == 1
    assert train["annotations"][1]["bbox"] == [1.0, 10.0, 22.0, 9.0]  # spans both pieces
    all_ids = [a["id"] for c in (train, _coco(out, "val"), test) for a in c["annotations"]]
    assert len(all_ids) == len(set(all_ids)) == 6
    grey = Image.open(out / "images" / "grey.png")
    colour = Image.open(out / "images" / "colour.png")
    assert grey.mode == "L" and colour.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(grey), GREY[..., 0])
    np.testing.assert_array_equal(np.asarray(colour), COLOUR)
    assert sorted(os.listdir(out / "images")) == ["colour.png", "grey.png", "grey_small.png"]


def test_folder_and_zip_with_top_folder_give_the_same_output(tmp_path):
    from_zip, from_folder = tmp_path / "a", tmp_path / "b"
    prepare(_write_zip(tmp_path / "s.zip", _layout(), top="stage1_train/"), from_zip, SPLIT, progress=False)
    summary = prepare(_write_folder(tmp_path / "folder", _layout()), from_folder, SPLIT, progress=False)
    assert dict(summary.skipped_images)["emptymasks"] == "no masks (empty masks/ folder)"
    for split in SPLIT:
        assert _coco(from_zip, split) == _coco(from_folder, split)


def test_cli_rerun_is_idempotent_and_leaves_no_temp_files(tmp_path, split_file, capsys):
    source = _write_zip(tmp_path / "stage1_train.zip", _layout())
    root = tmp_path / "root"
    args = ["--source", source, "--output-root", str(root), "--split", split_file, "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total:     3 images,       6 instances" in out and "skipped images: 8" in out
    first = {s: (root / "dsb2018" / "annotations" / f"instances_{s}.json").read_bytes() for s in SPLIT}
    first_image = (root / "dsb2018" / "images" / "grey.png").read_bytes()
    assert main(args) == 0
    assert os.listdir(root) == ["dsb2018"]
    assert sorted(os.listdir(root / "dsb2018")) == ["annotations", "images"]
    for s in SPLIT:
        assert (root / "dsb2018" / "annotations" / f"instances_{s}.json").read_bytes() == first[s]
    assert (root / "dsb2018" / "images" / "grey.png").read_bytes() == first_image


def test_interrupted_run_keeps_the_previous_output(tmp_path, monkeypatch):
    source = _write_zip(tmp_path / "s.zip", _layout())
    out = tmp_path / "root" / "dsb2018"
    prepare(source, out, SPLIT, progress=False)
    before = (out / "annotations" / "instances_train.json").read_bytes()
    calls = []

    def interrupt(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = prepare_dsb2018.convert_image
    monkeypatch.setattr(prepare_dsb2018, "convert_image", interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, out, {"train": ["grey", "colour"], "val": [], "test": []}, progress=False)
    assert os.listdir(tmp_path / "root") == ["dsb2018"]
    assert (out / "annotations" / "instances_train.json").read_bytes() == before
    assert sorted(os.listdir(out / "annotations")) == ["instances_test.json", "instances_train.json", "instances_val.json"]


def test_fixed_source_goes_to_dsb2018_fixed(tmp_path, capsys):
    files = {k: v for k, v in _layout().items() if not k.startswith("colour/")}
    split = dict(SPLIT, fixed_removed_ids=["colour", "missing1"])
    (tmp_path / "split.json").write_text(json.dumps(split))
    source = _write_zip(tmp_path / "renamed.zip", files)  # detected by the ids it lacks, not its name
    assert main(["--source", source, "--output-root", str(tmp_path), "--split", str(tmp_path / "split.json"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "label-fixed" in text and "removed by the label fixes (expected): 2" in text and "WARNING" not in text
    assert _coco(tmp_path / "dsb2018_fixed", "test")["images"] == []
    assert not (tmp_path / "dsb2018").exists()


@pytest.mark.parametrize("kind", ["zip", "folder", "not_a_zip", "missing"])
def test_non_kaggle_source_fails_clearly(tmp_path, split_file, capsys, kind):
    files = {"photos/cat.png": _png(np.zeros((4, 4), np.uint8)), "README.txt": b"hello"}
    if kind == "zip":
        source = _write_zip(tmp_path / "other.zip", files)
    elif kind == "folder":
        source = _write_folder(tmp_path / "other", files)
    elif kind == "not_a_zip":
        source = _write_folder(tmp_path, {"notes.zip": b"plain text"}) + "/notes.zip"
    else:
        source = str(tmp_path / "nowhere.zip")
    code = main(["--source", source, "--output-root", str(tmp_path / "root"), "--split", split_file])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and err.startswith("maskrcnnpp-prepare-dsb2018: error:")
    if kind != "missing":
        assert "expected the Kaggle stage1_train layout: <image_id>/images/<image_id>.png" in err
    else:
        assert "source not found" in err
    assert not (tmp_path / "root" / "dsb2018").exists()


def test_truncated_zip_is_called_damaged_not_a_non_zip(tmp_path, split_file, capsys):
    whole = _write_zip(tmp_path / "whole.zip", _layout())
    data = open(whole, "rb").read()
    source = tmp_path / "stage1_train.zip"
    source.write_bytes(data[: len(data) // 2])  # a download cut off halfway
    code = main(["--source", str(source), "--output-root", str(tmp_path / "root"), "--split", split_file])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{source}: damaged or incomplete zip archive" in err and "neither a folder" not in err
    assert not (tmp_path / "root" / "dsb2018").exists()


def test_committed_split_file():
    split = load_split()
    ids = [i for s in ("train", "val", "test") for i in split[s]]
    assert [len(split[s]) for s in ("train", "val", "test")] == [335, 134, 201]
    assert len(set(ids)) == 670 and len(split["fixed_removed_ids"]) == 6
    assert set(split["fixed_removed_ids"]) <= set(ids)
    assert split["seed"] == 2018 and "stratified" in split["method"]



def _temp_dir_owned_by(monkeypatch, parent, pid):
    """A preparation's temporary folder as the process ``pid`` would have made it."""
    os.makedirs(parent, exist_ok=True)
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: pid)
        path = make_owned_temp_dir(str(parent), ".dsb2018.tmp-")
    os.makedirs(os.path.join(path, "build", "images"))
    return os.path.basename(path)


def test_a_temporary_folder_of_a_killed_run_is_removed(tmp_path, monkeypatch):
    root = tmp_path / "root"
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its PID is no longer alive
    stale = _temp_dir_owned_by(monkeypatch, root, finished.pid)
    summary = prepare(_write_zip(tmp_path / "s.zip", _layout()), root / "dsb2018", SPLIT, progress=False)
    assert os.listdir(root) == ["dsb2018"]
    assert summary.removed_temps == [stale]
    assert f"removed temporary folders of killed runs: 1\n    {stale}" in summary.format()


def test_the_temporary_folder_of_a_running_preparation_is_kept(tmp_path, monkeypatch):
    root = tmp_path / "root"
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = _temp_dir_owned_by(monkeypatch, root, running.pid)
        summary = prepare(_write_zip(tmp_path / "s.zip", _layout()), root / "dsb2018", SPLIT, progress=False)
        assert sorted(os.listdir(root)) == sorted([live, "dsb2018"])
        assert os.path.isdir(root / live / "build" / "images")
        assert summary.removed_temps == [] and live not in summary.format()
    finally:
        running.communicate(b"")


def test_a_temporary_folder_without_an_owner_is_kept_and_named(tmp_path):
    root = tmp_path / "root"
    os.makedirs(root / ".dsb2018.tmp-k2j4x9qz" / "build")  # made before folders named their owner
    summary = prepare(_write_zip(tmp_path / "s.zip", _layout()), root / "dsb2018", SPLIT, progress=False)
    assert sorted(os.listdir(root)) == [".dsb2018.tmp-k2j4x9qz", "dsb2018"]
    assert summary.unknown_temps == [".dsb2018.tmp-k2j4x9qz"]
    assert "owner unknown (remove them if no preparation is running): 1\n    .dsb2018.tmp-k2j4x9qz" in summary.format()


def test_the_list_of_ids_missing_from_the_source_is_capped(tmp_path):
    missing = [f"gone{i:03d}" for i in range(665)]
    split = dict(SPLIT, test=SPLIT["test"] + missing)
    summary = prepare(_write_zip(tmp_path / "s.zip", _layout()), tmp_path / "dsb2018", split, progress=False)
    lines = summary.format().splitlines()
    start = lines.index("  WARNING: 666 ids of the split file are not in the source:")
    shown = prepare_dsb2018.MAX_LISTED
    assert lines[start + 1 : start + shown + 2] == [f"    gone{i:03d} (test)" for i in range(shown)] + ["    ... 646 more"]
    assert len(lines) < 40  # the summary above the list stays in sight
