"""The model zoo's loading path: maskrcnnpp://<name> through Detectron2's PathManager, half-precision
files checked by sha256, and prediction with no config from the default model (on a model exported
here from random weights: the zoo's own models are tested where they are committed)."""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager
from PIL import Image

from maskrcnnpp import model_zoo
from maskrcnnpp.data.synthetic import make_image
from maskrcnnpp.engine import NucleiCheckpointer, load_weights_strictly, read_checkpoint
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.errors import UserError
from maskrcnnpp.modeling.size_head import build_size_head
from maskrcnnpp.predict.predictor import NucleiPredictor
from maskrcnnpp.predict.cli import main
from maskrcnnpp.errors import EXIT_USER_ERROR

CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(zoo root holding model "tiny", marked default; the fp32 state it was exported from)."""
    cfg = load_cfg(os.path.join(REPO, CONFIG))
    torch.manual_seed(0)
    model = build_model(cfg)
    folder = tmp_path_factory.mktemp("trained")
    NucleiCheckpointer(model, save_dir=str(folder)).save("model_final")
    head = build_size_head(cfg, model)
    torch.save({"size_head": head.state_dict()}, folder / "size_head.pth")
    root = tmp_path_factory.mktemp("zoo")
    model_zoo.export_model("tiny", cfg, str(folder / "model_final.pth"),
                           {"command": "python tools/train_net.py ...", "metrics": {"fg_iou": 0.0}},
                           default=True, root=str(root), size_head=str(folder / "size_head.pth"))
    return str(root), model.state_dict(), head.state_dict()


@pytest.fixture
def zoo(exported, monkeypatch):
    monkeypatch.setattr(model_zoo, "ROOT", exported[0])
    return exported


def test_export_writes_half_precision_weights_under_32_mib_with_their_sha256(zoo):
    root, *_ = zoo
    info = json.load(open(os.path.join(root, "tiny", "model.json")))
    path = os.path.join(root, "tiny", info["weights"])
    assert os.path.getsize(path) <= 32 * 2 ** 20  # the product's R-18 model fits the zoo's limit
    assert info["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest() and info["default"] is True
    state = torch.load(path, weights_only=True)["model"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    assert model_zoo.list_models() == ["tiny"] and model_zoo.default_model() == "tiny"


def test_weights_load_by_name_through_pathmanager_into_the_fp32_model(zoo):
    _, original, _ = zoo
    assert PathManager.get_local_path("maskrcnnpp://tiny").endswith("model_final_fp16.pth")
    model = build_model(load_cfg(model_zoo.config_path("tiny")))
    load_weights_strictly(model, "maskrcnnpp://tiny")
    loaded = model.state_dict()
    for key, value in original.items():
        if value.is_floating_point():
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key], value.half().float()), key


def test_the_zoo_file_carries_the_size_head_that_prediction_uses(zoo):
    _, _, head = zoo
    cfg = load_cfg(model_zoo.config_path("tiny"), ["MODEL.WEIGHTS", "maskrcnnpp://tiny"])
    predictor = NucleiPredictor(cfg, "tiny")
    loaded = predictor.size_reader.head.state_dict()
    assert set(loaded) == set(head) and all(torch.equal(loaded[k], head[k].half().float()) for k in head)
    prediction = predictor(make_image(np.random.default_rng(0), 128, 128)[0])
    assert prediction.diameter_source == "size_head" and prediction.estimate_passes in (1, 2, 3)  # one or two looks, one check


def test_a_damaged_file_and_an_unknown_name_are_refused_in_one_line(zoo, tmp_path, monkeypatch):
    root, *_ = zoo
    damaged = tmp_path / "zoo"
    os.makedirs(damaged / "tiny")
    for name in os.listdir(os.path.join(root, "tiny")):
        data = open(os.path.join(root, "tiny", name), "rb").read()
        if name.endswith(".pth"):
            data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
        (damaged / "tiny" / name).write_bytes(data)
    monkeypatch.setattr(model_zoo, "ROOT", str(damaged))
    with pytest.raises(UserError) as e:
        read_checkpoint("maskrcnnpp://tiny")
    assert "maskrcnnpp://tiny" in str(e.value) and "does not match its sha256" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"maskrcnnpp://nope: no such model in the model zoo \(its models: tiny\)"):
        read_checkpoint("maskrcnnpp://nope")


def test_predict_with_no_config_uses_the_default_zoo_model(zoo, tmp_path, capsys):
    image = tmp_path / "cells.png"
    Image.fromarray(make_image(np.random.default_rng(0), 96, 128)[0]).save(image)
    out = tmp_path / "out"
    assert main(["--input", str(image), "--output", str(out), "--formats", "labels", "--no-progress",
                 "--diameter", "12"]) == 0
    assert (out / "labels" / "cells.png").is_file()
    assert main(["--model", "tiny", "--input", str(image), "--output", str(out), "--formats", "labels",
                 "--no-progress", "--diameter", "12"]) == 0


def test_predict_with_no_config_and_no_default_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(model_zoo, "ROOT", str(tmp_path))
    assert main(["--input", "x.png", "--output", str(tmp_path / "out")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.strip() == ("error: no model given and the model zoo has no default model: pass --config-file with "
                           "MODEL.WEIGHTS, or --model NAME")


def test_the_export_command_writes_a_loadable_zoo_model_with_its_training_overrides(tmp_path, monkeypatch, capsys):
    from maskrcnnpp.model_zoo.export import main as export_main

    cfg = load_cfg(os.path.join(REPO, CONFIG))
    model = build_model(cfg)
    NucleiCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    torch.save({"size_head": build_size_head(cfg, model).state_dict()}, tmp_path / "size_head.pth")
    args = ["--name", "exported", "--config-file", os.path.join(REPO, CONFIG), "--weights", str(tmp_path / "model_final.pth"),
            "--size-head", str(tmp_path / "size_head.pth"), "--training", "nothing", "--command", "none",
            "--root", str(tmp_path / "zoo"), "DATASETS.TRAIN", "('dsb2018_sample_train',)"]
    assert export_main(args) == 0
    monkeypatch.setattr(model_zoo, "ROOT", str(tmp_path / "zoo"))
    info = model_zoo.model_info("exported")
    assert (info["training"], info["command"], info["default"]) == ("nothing", "none", False)
    shipped = load_cfg(model_zoo.config_path("exported"))
    assert shipped.DATASETS.TRAIN == ("dsb2018_sample_train",) and shipped.MODEL.WEIGHTS == ""
    assert set(torch.load(model_zoo.weights_path("exported"), weights_only=True)) == {"model", "size_head"}
    with pytest.raises(SystemExit):
        export_main(args[:1] + ["bad/name"] + args[2:])
    assert capsys.readouterr().err.strip().endswith("--name 'bad/name': use letters, digits, '_' and '-' only")
