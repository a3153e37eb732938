"""maskrcnnpp-import-labels: images + instance label images -> a COCO dataset under a datasets root."""
import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from label_pairs import label_image, sample_coco, write_sample_pairs
from maskrcnnpp.data.import_labels import import_labels, main, pair_files, read_label_image, BadPair
from maskrcnnpp.data.segmentation import decode_segmentation
from maskrcnnpp.errors import UserError


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_sample_pairs(str(tmp_path_factory.mktemp("pairs")))


@pytest.fixture(scope="module")
def imported(pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    summary = import_labels(*pairs, "mysample", output_root=str(root))
    return root / "mysample", summary


def load(folder, split):
    return json.loads((folder / "annotations" / f"instances_{split}.json").read_text())


def test_import_of_the_sample_gives_its_images_and_masks(imported):
    folder, summary = imported
    expected = sample_coco()
    records, annotations = {}, {}
    for split in ("train", "val", "test"):
        coco = load(folder, split)
        for image in coco["images"]:
            records[image["image_key"]] = image
            annotations[image["image_key"]] = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    assert sorted(records) == sorted(expected)
    assert summary.images == {"train": 10, "val": 1, "test": 1}  # 80/10/10 of 12
    assert sum(summary.instances.values()) == sum(len(a) for _, a in expected.values())
    for key, (image, truth) in expected.items():
        record = records[key]
        assert record["modality"] == image["modality"] and record["median_diameter"] > 0
        assert (record["height"], record["width"]) == (image["height"], image["width"])
        saved = np.asarray(Image.open(folder / "images" / record["file_name"]))
        assert saved.shape[:2] == (image["height"], image["width"])
        assert len(annotations[key]) == len(truth), key
        gt = [decode_segmentation(a["segmentation"]) for a in truth]
        overlap = np.sum(gt, axis=0) > 1
        for mine, theirs in zip(annotations[key], gt):
            got = decode_segmentation(mine["segmentation"])
            np.testing.assert_array_equal(got & ~overlap, theirs & ~overlap)
            assert mine["area"] == got.sum() and mine["iscrowd"] == 0


def test_saved_images_keep_their_pixels(imported, pairs):
    folder, _ = imported
    for name in os.listdir(pairs[0]):
        original = np.asarray(Image.open(os.path.join(pairs[0], name)).convert("RGB"))
        saved = np.asarray(Image.open(folder / "images" / name).convert("RGB"))
        np.testing.assert_array_equal(saved, original)


def test_split_is_reproducible_and_follows_the_seed(pairs, tmp_path, imported):
    folder, _ = imported
    import_labels(*pairs, "again", output_root=str(tmp_path))
    for split in ("train", "val", "test"):
        assert load(folder, split)["images"] == load(tmp_path / "again", split)["images"]
    import_labels(*pairs, "other", output_root=str(tmp_path), seed=7)
    keys = lambda root: sorted(i["image_key"] for s in ("val", "test") for i in load(root, s)["images"])  # noqa: E731
    assert len(keys(tmp_path / "other")) == 2


def test_zero_fraction_writes_no_such_split(pairs, tmp_path):
    summary = import_labels(*pairs, "notest", output_root=str(tmp_path),
                            fractions={"train": 0.75, "val": 0.25, "test": 0.0})
    assert summary.images == {"train": 9, "val": 3}
    assert sorted(os.listdir(tmp_path / "notest" / "annotations")) == ["instances_train.json", "instances_val.json"]


def test_split_file(pairs, tmp_path):
    keys = sorted(sample_coco())
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": keys[:6], "val": [k + ".png" for k in keys[6:9]], "test": keys[9:11]}))
    summary = import_labels(*pairs, "bysplit", output_root=str(tmp_path / "root"), split_file=str(split_file))
    assert summary.images == {"train": 6, "val": 3, "test": 2}
    assert [i["image_key"] for i in load(tmp_path / "root" / "bysplit", "val")["images"]] == keys[6:9]
    assert any("not in the split file" in reason for _, reason in summary.skipped)


def test_command_prints_a_summary(pairs, tmp_path, capsys):
    assert main(["--images", pairs[0], "--labels", pairs[1], "--name", "cmd", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "12 images" in out and "cmd_train: 10 images" in out and "skipped pairs: 0" in out


def test_pairing_tolerates_label_suffixes(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    for name in ("a.png", "b.tif", "c_masks.png", "d.jpg"):
        (tmp_path / "i" / name).write_bytes(b"")
    for name in ("a_masks.png", "b_labels.tif", "c_masks_masks.png", "e_label.png"):
        (tmp_path / "l" / name).write_bytes(b"")
    pairs, unpaired = pair_files(str(tmp_path / "i"), str(tmp_path / "l"))
    assert sorted(pairs) == ["a", "b", "c_masks"]
    assert sorted(name for name, _ in unpaired) == ["d.jpg", "e_label.png"]
    assert any("without a label image" in r for _, r in unpaired)
    assert any("without an image" in r for _, r in unpaired)


@pytest.mark.parametrize(
    "dtype, extension",
    [(np.uint8, ".png"), (np.uint16, ".png"), (np.uint8, ".tif"), (np.uint16, ".tif"), (np.int32, ".tif"),
     (np.uint32, ".tif")],
)
def test_integer_label_images_of_any_width(tmp_path, dtype, extension):
    labels = np.zeros((6, 7), dtype)
    labels[1:3, 1:3], labels[4, 5] = 3, np.iinfo(dtype).max
    path = str(tmp_path / ("l" + extension))
    if extension == ".tif":
        tifffile.imwrite(path, labels)
    else:
        Image.fromarray(labels).save(path)
    np.testing.assert_array_equal(read_label_image(path), labels)


def _one_bad_pair(tmp_path, label, image_shape=(8, 9)):
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    ok = np.zeros(image_shape, np.uint16)
    ok[2:5, 2:5] = 1
    for name in ("good", "good2", "good3"):
        Image.fromarray(np.full(image_shape, 100, np.uint8)).save(tmp_path / "i" / f"{name}.png")
        Image.fromarray(ok).save(tmp_path / "l" / f"{name}_masks.png")
    Image.fromarray(np.full(image_shape, 100, np.uint8)).save(tmp_path / "i" / "bad.png")
    if isinstance(label, np.ndarray):
        tifffile.imwrite(tmp_path / "l" / "bad.tif", label)
    else:
        label.save(tmp_path / "l" / "bad.png")
    return str(tmp_path / "i"), str(tmp_path / "l")


@pytest.mark.parametrize(
    "label, reason",
    [
        (np.zeros((8, 10), np.uint16), "label image is 8x10, its image 8x9"),
        (np.zeros((8, 9), np.float32), "float32 label image"),
        (np.full((8, 9), -1, np.int32), "negative labels"),
        (Image.new("RGB", (9, 8)), "RGB label image"),
        (np.zeros((8, 9), np.uint16), "no nucleus"),
    ],
    ids=["size", "float", "negative", "rgb", "empty"],
)
def test_bad_pairs_are_skipped_with_their_reason(tmp_path, label, reason, capsys):
    images, labels = _one_bad_pair(tmp_path, label)
    code = main(["--images", images, "--labels", labels, "--name", "withbad", "--output-root",
                 str(tmp_path / "root"), "--val-fraction", "0.34", "--test-fraction", "0.33"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if "bad.png" in line)
    assert reason in line
    assert "skipped pairs: 1" in out and "3 images" in out


def test_skipped_pairs_are_listed_capped_with_a_count(tmp_path, capsys):
    images, labels = _one_bad_pair(tmp_path, np.zeros((8, 9), np.uint16))
    for n in range(25):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(os.path.join(images, f"lonely{n:02d}.png"))
    main(["--images", images, "--labels", labels, "--name", "capped", "--output-root", str(tmp_path / "r"),
          "--val-fraction", "0.34", "--test-fraction", "0.33"])
    out = capsys.readouterr().out
    assert "skipped pairs: 26" in out and "... 6 more" in out
    assert sum("without a label image" in line for line in out.splitlines()) == 20


def _fails(capsys, argv, *words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--no-progress"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def test_fatal_inputs_are_one_line_and_write_nothing(tmp_path, capsys, pairs):
    root = tmp_path / "root"
    base = ["--output-root", str(root)]
    (tmp_path / "empty").mkdir()
    _fails(capsys, ["--images", str(tmp_path / "empty"), "--labels", pairs[1], "--name", "x", *base],
           "--images", "empty folder")
    _fails(capsys, ["--images", str(tmp_path / "nope"), "--labels", pairs[1], "--name", "x", *base],
           "nope", "no such folder")
    for builtin in ("dsb2018", "dsb2018_fixed", "dsb2018_sample"):
        _fails(capsys, ["--images", pairs[0], "--labels", pairs[1], "--name", builtin, *base], builtin, "clashes")
    _fails(capsys, ["--images", pairs[0], "--labels", pairs[1], "--name", "coco_2017", *base], "coco_2017", "clashes")
    _fails(capsys, ["--images", pairs[0], "--labels", pairs[1], "--name", "../up", *base], "--name")
    dup = tmp_path / "dup"
    dup.mkdir()
    for name in ("a.png", "a.tif"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(dup / name)
    _fails(capsys, ["--images", str(dup), "--labels", pairs[1], "--name", "x", *base], "duplicate stem 'a'")
    assert not root.exists() or not [n for n in os.listdir(root) if not n.startswith(".")]
    assert not root.exists() or not os.listdir(root)  # no temporary folder left either


def test_a_split_left_empty_is_named(tmp_path, capsys):
    images, labels = _one_bad_pair(tmp_path, np.zeros((8, 9), np.uint16))
    root = tmp_path / "root"
    _fails(capsys, ["--images", images, "--labels", labels, "--name", "few", "--output-root", str(root)],
           "split 'val' would be empty", "3 usable image(s)", "--val-fraction")
    assert os.listdir(root) == []  # nothing half-written, no temporary folder left


def test_no_usable_pair_is_one_line(tmp_path, capsys):
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "i" / "a.png")
    tifffile.imwrite(tmp_path / "l" / "a.tif", np.zeros((4, 4), np.float32))
    _fails(capsys, ["--images", str(tmp_path / "i"), "--labels", str(tmp_path / "l"), "--name", "none",
                    "--output-root", str(tmp_path / "root")], "no usable image/label pair", "float32")


def test_reimport_replaces_the_folder_whole(pairs, tmp_path):
    import_labels(*pairs, "twice", output_root=str(tmp_path))
    (tmp_path / "twice" / "images" / "stale.png").write_bytes(b"")
    import_labels(*pairs, "twice", output_root=str(tmp_path))
    assert "stale.png" not in os.listdir(tmp_path / "twice" / "images")
    assert sorted(os.listdir(tmp_path)) == ["twice"]


def test_read_label_image_rejects_what_is_not_a_label_image(tmp_path):
    Image.new("RGBA", (3, 3)).save(tmp_path / "a.png")
    with pytest.raises(BadPair, match="RGBA label image"):
        read_label_image(str(tmp_path / "a.png"))
    with pytest.raises(UserError):
        import_labels(str(tmp_path), str(tmp_path), "dsb2018")
