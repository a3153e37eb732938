"""The prepared dataset cut into parts for a lent GPU machine, and put back together there."""
import os
import subprocess

import numpy as np
import pytest


def gpu_data(repo_root, *args):
    return subprocess.run(["bash", os.path.join(repo_root, "benchmarks", "semantic", "gpu_data.sh"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def packed(repo_root, tmp_path):
    dataset = tmp_path / "datasets" / "dsb2018"
    (dataset / "images").mkdir(parents=True)
    (dataset / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        (dataset / "images" / f"{i}.png").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (dataset / "annotations" / "instances_train.json").write_text('{"images": []}')
    done = gpu_data(repo_root, "pack", dataset, tmp_path / "parts", 4000)
    assert done.returncode == 0, done.stderr
    return dataset, tmp_path / "parts"


def test_the_parts_fit_the_size_given_and_unpack_to_the_same_files(repo_root, tmp_path, packed):
    dataset, parts = packed
    pieces = sorted(parts.glob("dsb2018.tar.xz.*"))
    assert len(pieces) == 3 and all(p.stat().st_size <= 4000 for p in pieces)
    done = gpu_data(repo_root, "unpack", parts, tmp_path / "there")
    assert done.returncode == 0, done.stderr
    for path in dataset.rglob("*"):
        if path.is_file():
            assert (tmp_path / "there" / "dsb2018" / path.relative_to(dataset)).read_bytes() == path.read_bytes()


def test_a_missing_or_damaged_part_is_named_and_nothing_is_unpacked(repo_root, tmp_path, packed):
    _, parts = packed
    last = sorted(parts.glob("dsb2018.tar.xz.*"))[-1]
    data = last.read_bytes()
    last.unlink()
    done = gpu_data(repo_root, "unpack", parts, tmp_path / "there")
    assert done.returncode == 2 and "2 of 3 parts of dsb2018 are here" in done.stderr
    last.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    done = gpu_data(repo_root, "unpack", parts, tmp_path / "there")
    assert done.returncode == 2 and "do not match" in done.stderr
    assert not (tmp_path / "there").exists()
