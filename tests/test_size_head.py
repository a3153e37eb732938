"""The size head: its views, its estimate's looks, its training tool, and how predict finds it."""
import math
import os

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from PIL import Image

from maskrcnnpp.data import synthetic
from maskrcnnpp.data.size_views import MIN_VIEW_SIDE, rescaled_view
from maskrcnnpp.engine.setup import load_cfg
from maskrcnnpp.engine.size_head_training import SIZE_HEAD_FILE, main as train_main
from maskrcnnpp.errors import ConfigError, UserError
from maskrcnnpp.modeling.size_head import build_size_head, detector_features, feature_extractor
from maskrcnnpp.predict.estimate import estimate_by_size_head
from maskrcnnpp.predict.predictor import CroppedMask, Detection, NucleiPredictor
from maskrcnnpp.predict.size_reading import load_size_reader

pytestmark = pytest.mark.usefixtures("fresh_loggers")  # the training tool sets up its loggers
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"
SMALL = ["MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "20", "TEST.TILE_SIZE", "128",
         "TEST.TILE_OVERLAP", "40"]


def scaled_cfg(*extra):
    """The product's config, scaled by diameter, with small test-time limits and ``extra`` overrides."""
    return load_cfg(os.path.join(REPO, CONFIG), ["INPUT.SCALE_POLICY", "diameter", *SMALL, *extra])


def test_a_view_is_rescaled_and_mirrored_out_to_the_minimum_side():
    image = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    view, scale = rescaled_view(image, 0.5, (0, 100, 0, 80))
    assert view.shape == (MIN_VIEW_SIDE, MIN_VIEW_SIDE, 3)  # 50 x 40, mirrored out
    assert scale == pytest.approx(0.5)
    view, scale = rescaled_view(image, 1.0, (10, 90, 0, 80))
    assert view.shape == (80, 80, 3) and scale == 1.0 and np.array_equal(view, image[10:90])
    _, scale = rescaled_view(image, 0.333, (0, 100, 0, 80))  # 33 x 27 px: the real scale, not the asked
    assert scale == pytest.approx(math.sqrt(33 / 100 * 27 / 80))


class ExactReader:
    """Reads a view's ratio as a perfect head would (true diameter x scale / 17), clamped to the
    head's range and times ``bias``; records the scales it was asked for."""

    def __init__(self, diameter, bias=1.0, view_range=(0.25, 4.0)):
        self.diameter, self.bias, self.view_range, self.scales = diameter, bias, view_range, []

    def __call__(self, image, scale, region):
        self.scales.append(scale)
        ratio = min(max(self.diameter * scale / 17.0 * self.bias, self.view_range[0]), self.view_range[1])
        return ratio, scale


@pytest.mark.parametrize("diameter,looks", [(5.0, 2), (9.0, 1), (17.0, 1), (30.0, 1), (40.0, 2), (94.0, 2)])
def test_one_look_within_2x_of_the_guess_and_two_beyond_even_beyond_the_heads_range(diameter, looks):
    image = np.zeros((600, 700, 3), np.uint8)
    reader = ExactReader(diameter)
    estimate = estimate_by_size_head(reader, image, default=17.0, target=17.0, region_size=256)
    assert estimate.diameter == pytest.approx(diameter, rel=1e-6)
    assert estimate.passes == looks and len(reader.scales) == looks
    if estimate.passes == 2:  # the second look is at the scale the first one found
        assert reader.scales[1] == pytest.approx(17.0 / min(max(diameter, 17.0 / 4), 17.0 * 4), rel=1e-6)


def test_a_biased_head_is_within_its_bias_after_two_looks():
    estimate = estimate_by_size_head(ExactReader(60.0, bias=1.1), np.zeros((300, 300, 3), np.uint8), 17.0, 17.0, 256)
    assert estimate.diameter == pytest.approx(66.0, rel=1e-6) and estimate.passes == 2


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory):
    """A Mask R-CNN++ with random weights saved as a checkpoint, and a synthetic labelled set."""
    folder = tmp_path_factory.mktemp("size_head")
    torch.manual_seed(0)
    cfg = scaled_cfg()
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(folder)).save("detector")
    records = synthetic.make_dataset(str(folder / "images"), num_images=6, size=(160, 180), seed=1)
    name = "size_head_synthetic"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(thing_classes=["nucleus"])
    return folder, str(folder / "detector.pth"), name


def train_args(repo_root, weights, dataset, output, *extra):
    return ["--config-file", os.path.join(repo_root, CONFIG), "--views-per-image", "3", "--iterations", "60",
            *extra, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(output), "DATASETS.TRAIN", f"('{dataset}',)",
            "DATASETS.TEST", f"('{dataset}',)", "INPUT.SCALE_POLICY", "diameter"] + SMALL


def test_the_tool_writes_a_head_that_predict_then_uses(repo_root, random_detector, tmp_path, capsys):
    folder, weights, dataset = random_detector
    assert train_main(train_args(repo_root, weights, dataset, tmp_path / "run")) == 0
    saved = torch.load(tmp_path / "run" / SIZE_HEAD_FILE, map_location="cpu", weights_only=True)
    assert saved["detector"] == weights and saved["training"]["iterations"] == 60
    scored = saved["metrics"][dataset]
    assert scored["images"] == 6 and 1.0 <= scored["mean_passes"] <= 2.0 and scored["median_error"] >= 0

    cfg = scaled_cfg("MODEL.WEIGHTS", weights, "MODEL.SIZE_HEAD.WEIGHTS", str(tmp_path / "run" / SIZE_HEAD_FILE),
                     "TEST.NUCLEI.SCORE_THRESHOLD", "0.0")
    predictor = NucleiPredictor(cfg, CONFIG)
    image, _ = synthetic.make_image(np.random.default_rng(3), 200, 220, max_nuclei=6)
    prediction = predictor(image)
    assert prediction.diameter_source == "size_head" and prediction.estimate_passes in (1, 2, 3)  # one or two looks, one check
    low, high = 17.0 / 8, 17.0 * 8
    assert low <= prediction.diameter <= high


def test_a_trained_head_orders_views_by_scale(repo_root, random_detector, tmp_path):
    """Even on random features, training must teach the head that a view shown at 4x reads
    larger than the same view at 1/4x (a head that learned nothing fails this)."""
    folder, weights, dataset = random_detector
    assert train_main(train_args(repo_root, weights, dataset, tmp_path / "run", "--iterations", "300")) == 0
    cfg = scaled_cfg("MODEL.WEIGHTS", weights, "MODEL.SIZE_HEAD.WEIGHTS", str(tmp_path / "run" / SIZE_HEAD_FILE))
    predictor = NucleiPredictor(cfg, CONFIG)
    readings = []
    for record in DatasetCatalog.get(dataset)[:4]:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        small, _ = predictor.size_reader(image, 0.25)
        large, _ = predictor.size_reader(image, 4.0)
        readings.append(large / small)
    assert min(readings) > 2.0


def test_weights_without_a_head_fall_back_to_the_search_or_refuse(repo_root, random_detector):
    _, weights, _ = random_detector
    cfg = scaled_cfg("MODEL.WEIGHTS", weights)
    assert NucleiPredictor(cfg, CONFIG).size_reader is None  # "auto"
    cfg.TEST.DIAMETER_ESTIMATE = "size_head"
    with pytest.raises(UserError, match=r"detector\.pth: holds no size head .*maskrcnnpp-train-size-head"):
        NucleiPredictor(cfg, CONFIG)


def head_file(path, cfg, model, detector_weights=None):
    """A file holding a (random) size head of ``model``, and the detector's weights when given."""
    content = {"size_head": build_size_head(cfg, model).state_dict()}
    if detector_weights:
        content["model"] = torch.load(detector_weights, weights_only=True)["model"]
    torch.save(content, path)
    return str(path)


def test_a_head_file_as_the_detector_or_of_another_width_is_refused(random_detector, tmp_path):
    _, weights, _ = random_detector
    cfg = scaled_cfg()
    model = build_model(cfg)
    cfg.MODEL.WEIGHTS = head_file(tmp_path / "head.pth", cfg, model)
    with pytest.raises(UserError, match="head.pth: holds a size head only, no detector weights"):
        NucleiPredictor(cfg, CONFIG)
    cfg.MODEL.WEIGHTS, cfg.MODEL.SIZE_HEAD.WEIGHTS, cfg.MODEL.SIZE_HEAD.CHANNELS = weights, cfg.MODEL.WEIGHTS, 32
    with pytest.raises(UserError, match="head.pth: its size head does not match MODEL.SIZE_HEAD: .*keys of another shape"):
        load_size_reader(cfg, model)


def test_a_head_inside_the_detector_file_is_found_only_with_that_file(random_detector, tmp_path):
    _, weights, _ = random_detector
    cfg = scaled_cfg()
    model = build_model(cfg)
    cfg.MODEL.WEIGHTS = head_file(tmp_path / "bundled.pth", cfg, model, detector_weights=weights)
    assert NucleiPredictor(cfg, CONFIG).size_reader is not None
    # a model handed in ready-built (evaluation during training) may have moved on from the file
    assert NucleiPredictor(cfg, CONFIG, model=model.eval()).size_reader is None
    cfg.TEST.DIAMETER_ESTIMATE = "size_head"
    with pytest.raises(UserError, match="^no size head given .*MODEL.SIZE_HEAD.WEIGHTS"):
        NucleiPredictor(cfg, CONFIG, model=model.eval())


@pytest.mark.parametrize("in_features", [("res3", "res4", "res5"), ("p3", "p5")])
def test_features_of_any_view_size_from_the_resnet_or_the_neck(repo_root, in_features):
    cfg = scaled_cfg("MODEL.SIZE_HEAD.IN_FEATURES", str(list(in_features)))
    model = build_model(cfg).eval()
    head = build_size_head(cfg, model)
    assert (feature_extractor(model, in_features) is model.backbone.bottom_up) == in_features[0].startswith("res")
    for shape in [(3, 64, 64), (3, 130, 210)]:
        features = detector_features(model, torch.rand(shape) * 255, in_features)
        assert tuple(features) == in_features
        assert head(features).shape == (1,)


def test_features_the_backbone_lacks_are_named(repo_root):
    cfg = scaled_cfg("MODEL.SIZE_HEAD.IN_FEATURES", "['res4', 'res9']")
    with pytest.raises(ConfigError, match=r"MODEL.SIZE_HEAD.IN_FEATURES: \['res9'\]; choose among .*res2, .*p6"):
        build_size_head(cfg, build_model(cfg))


@pytest.mark.parametrize("flag,value,message", [
    ("--iterations", "0", "--iterations must be at least 1, not 0"),
    ("--views-per-image", "-1", "--views-per-image must be at least 1, not -1"),
    ("--lr", "nan", "--lr must be a positive number, not nan"),
])
def test_bad_flags_are_one_line(repo_root, random_detector, tmp_path, capsys, flag, value, message):
    _, weights, dataset = random_detector
    with pytest.raises(SystemExit) as exit_info:
        train_main(train_args(repo_root, weights, dataset, tmp_path / "run", flag, value))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_an_image_size_model_is_refused(repo_root, random_detector, tmp_path, capsys):
    _, weights, dataset = random_detector
    args = train_args(repo_root, weights, dataset, tmp_path / "run")
    args[args.index("diameter")] = "image_size"
    with pytest.raises(SystemExit):
        train_main(args)
    assert "the size head is for INPUT.SCALE_POLICY diameter models, not image_size" in capsys.readouterr().err


def test_labels_leave_out_empty_annotations_and_images_without_nuclei(tmp_path):
    from maskrcnnpp.engine.size_head_training import _labelled_images

    image, _ = synthetic.make_image(np.random.default_rng(0), 64, 64)
    path = str(tmp_path / "a.png")
    Image.fromarray(image).save(path)
    square = {"bbox": [10, 20, 10, 10], "area": 100.0, "iscrowd": 0}  # no bbox_mode: COCO's XYWH
    records = [
        {"file_name": path, "height": 64, "width": 64, "image_id": 1,
         "annotations": [square, dict(square, area=0.0), dict(square, area=400.0, iscrowd=1)]},
        {"file_name": path, "height": 64, "width": 64, "image_id": 2, "annotations": []},
    ]
    name = "size_head_labels"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
    (labelled,) = _labelled_images([name], "BGR")
    assert labelled.diameter == pytest.approx(math.sqrt(400 / math.pi))
    assert labelled.centres.tolist() == [[25.0, 15.0]] and len(labelled.diameters) == 1


@pytest.mark.parametrize("check,diameters", [(0.0, [20.0]), (0.15, [20.0, 40.0])])
def test_the_nuclei_found_at_the_heads_reading_check_it_when_asked(repo_root, random_detector, tmp_path, check,
                                                                   diameters):
    folder, weights, _ = random_detector
    cfg = scaled_cfg("MODEL.WEIGHTS", weights, "TEST.SIZE_HEAD_CHECK", str(check))
    predictor = NucleiPredictor(cfg, CONFIG)
    predictor.size_reader = ExactReader(20.0)  # reads 20 px; the nuclei found measure 40 px
    asked = []

    def predict_at_diameter(image, diameter):
        asked.append(diameter)
        side = 36  # about 40 px across once measured as an equal-area circle
        return [Detection((10, 10 + 40 * k, 10 + side, 10 + 40 * k + side), 0.9, 1,
                          CroppedMask(10 + 40 * k, 10, np.ones((side, side), dtype=bool))) for k in range(3)]

    predictor.predict_at_diameter = predict_at_diameter
    prediction = predictor(np.zeros((200, 200, 3), np.uint8))
    assert asked == pytest.approx(diameters, rel=0.05)
    assert prediction.diameter == pytest.approx(diameters[-1], rel=0.05)
    assert prediction.estimate_passes == len(diameters) and prediction.diameter_source == "size_head"
