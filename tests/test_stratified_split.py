"""The seeded, stratified split, and the script that made the committed DSB2018 split with it."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from maskrcnnpp.data.dsb2018_split import PAPER_SIZES, load_split
from maskrcnnpp.data.stratified_split import allocate, sizes_from_fractions, stratified_split

import make_dsb2018_split  # datasets/, on sys.path through pytest.ini


def test_allocation_hits_split_sizes_and_covers_every_kind():
    # Stratum sizes of the real stage1_train (modality, HxW).
    sizes = {"a": 334, "b": 108, "c": 92, "d": 91, "e": 16, "f": 13, "g": 6, "h": 5, "i": 4, "j": 1}
    alloc = allocate(sizes, PAPER_SIZES)
    for split, n in PAPER_SIZES.items():
        assert sum(a[split] for a in alloc.values()) == n
    for stratum, m in sizes.items():
        assert sum(alloc[stratum].values()) == m
        if m >= 3:
            assert min(alloc[stratum].values()) >= 1, stratum


def test_allocation_reproduces_the_committed_dsb2018_split():
    committed = load_split()["strata"]
    stratum_sizes = {stratum: sum(counts.values()) for stratum, counts in committed.items()}
    assert allocate(stratum_sizes, PAPER_SIZES) == committed


def test_sizes_from_fractions_sum_to_the_total():
    assert sizes_from_fractions(670, {"train": 0.8, "val": 0.1, "test": 0.1}) == {"train": 536, "val": 67, "test": 67}
    assert sizes_from_fractions(7, {"train": 8, "val": 1, "test": 1}) == {"train": 5, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="cannot split 5 items"):
        sizes_from_fractions(5, {"train": 0, "val": 0})


def test_split_is_seeded_stratified_and_complete():
    strata = {f"img{i:03d}": ("grey", "colour", "rare")[0 if i < 60 else 1 if i < 95 else 2] for i in range(100)}
    sizes = sizes_from_fractions(len(strata), {"train": 0.8, "val": 0.1, "test": 0.1})
    split, counts = stratified_split(strata, sizes, seed=1)
    assert {k: len(v) for k, v in split.items()} == sizes == {"train": 80, "val": 10, "test": 10}
    assert sorted(i for ids in split.values() for i in ids) == sorted(strata)  # each item once
    for stratum in ("grey", "colour", "rare"):  # every kind in every subset (rare has 5 items)
        assert all(counts[stratum][k] >= 1 for k in sizes)
        assert [sum(strata[i] == stratum for i in split[k]) for k in sizes] == [counts[stratum][k] for k in sizes]
    assert stratified_split(strata, sizes, seed=1) == (split, counts)
    assert stratified_split(strata, sizes, seed=2)[0] != split


def test_split_sizes_must_cover_every_item():
    with pytest.raises(ValueError, match="3 items, but the subset sizes sum to 2"):
        stratified_split({"a": "x", "b": "x", "c": "y"}, {"train": 1, "test": 1}, seed=0)


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _kaggle_folder(root, images):
    for image_id, pixels in images.items():
        os.makedirs(root / image_id / "images")
        (root / image_id / "images" / f"{image_id}.png").write_bytes(_png(pixels))
    return str(root)


def _images():
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    images = {f"c{i}": colour for i in range(6)}
    images.update({f"g{i}": np.full((8, 10), 90, np.uint8) for i in range(3)})
    images["odd"] = np.full((5, 5, 3), 90, np.uint8)  # R == G == B: grey
    return images


def test_the_dsb2018_split_script_splits_by_modality_and_size(tmp_path):
    source = _kaggle_folder(tmp_path / "stage1_train", _images())
    fixed = _kaggle_folder(tmp_path / "stage1_train_fixed", {k: v for k, v in _images().items() if k != "odd"})
    sizes = {"train": 6, "val": 2, "test": 2}
    split = make_dsb2018_split.make_split(source, seed=3, sizes=sizes, fixed_source_path=fixed)
    assert split["strata"] == {  # at least one of each split in every stratum of 3 or more
        "colour 8x8": {"train": 4, "val": 1, "test": 1},
        "grey 5x5": {"train": 1, "val": 0, "test": 0},
        "grey 8x10": {"train": 1, "val": 1, "test": 1},
    }
    assert split["sizes"] == sizes and split["fixed_removed_ids"] == ["odd"]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(_images())
    assert make_dsb2018_split.make_split(source, seed=3, sizes=sizes) == {k: v for k, v in split.items() if k != "fixed_removed_ids"}


def test_the_dsb2018_split_script_fails_in_one_line_on_a_bad_source(tmp_path, capsys):
    source = _kaggle_folder(tmp_path / "stage1_train", _images())
    assert make_dsb2018_split.main(["--source", source, "--output", str(tmp_path / "split.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"make_dsb2018_split: error: {source}: 10 usable images, but the split sizes sum to 670")
    assert len(err.splitlines()) == 1 and not (tmp_path / "split.json").exists()


def test_small_subsets_shared_by_several_strata_lose_no_item():
    # Two strata of at least 3 items, but val and test have room for one item each: the
    # one-per-stratum minimum must yield to the subset sizes, and every item is still placed.
    strata = {f"c{i}": "colour" for i in range(5)}
    strata.update({f"g{i}": "grey" for i in range(7)})
    sizes = sizes_from_fractions(12, {"train": 0.8, "val": 0.1, "test": 0.1})
    split, counts = stratified_split(strata, sizes, seed=2018)
    assert {k: len(v) for k, v in split.items()} == sizes == {"train": 10, "val": 1, "test": 1}
    assert sorted(i for ids in split.values() for i in ids) == sorted(strata)
    assert all(n >= 0 for per in counts.values() for n in per.values())
