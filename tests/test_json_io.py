"""Atomic file writes and strict JSON."""
import json

import pytest

from maskrcnnpp.utils.json_io import atomic_write, write_json_atomic


def test_result_files_are_strict_json_with_nan_as_null(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(str(path), {"segm": {"AP": 21.7, "APl": float("nan")}, "runs": [float("inf"), 1]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"segm": {"AP": 21.7, "APl": None}, "runs": [None, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_a_failed_write_keeps_the_old_content_and_no_temporary_file(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as f:
            f.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_binary_writes_create_the_folder(tmp_path):
    path = tmp_path / "charts" / "chart.png"
    with atomic_write(str(path), "wb") as f:
        f.write(b"\x89PNG")
    assert path.read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write(str(path), "a"):
            pass


def test_replace_folder_swaps_whole_and_puts_the_old_one_back_on_failure(tmp_path, monkeypatch):
    import os

    from maskrcnnpp.utils.json_io import replace_folder

    target, new = tmp_path / "data", tmp_path / "build"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_folder(str(new), str(target), str(tmp_path / "parking"))
    assert sorted(os.listdir(target)) == ["new.txt"] and (tmp_path / "parking" / "old.txt").is_file()

    again = tmp_path / "build2"
    again.mkdir()
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src) == str(again):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        replace_folder(str(again), str(target), str(tmp_path / "parking2"))
    assert sorted(os.listdir(target)) == ["new.txt"]  # the previous content, not half of each
