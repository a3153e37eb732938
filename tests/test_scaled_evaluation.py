"""Evaluation under INPUT.SCALE_POLICY diameter (issue 13): Trainer.test wraps the model so that
inference_on_dataset predicts at the working scale, as tools/predict.py does."""
import pytest
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from PIL import Image

from maskrcnnpp.data.augmentation import build_nuclei_augmentation
from maskrcnnpp.data.diameter import fill_missing_diameters
from maskrcnnpp.engine.scaled_model import DiameterScaledModel
from maskrcnnpp.engine.trainer import Trainer
from stub_disk_model import StubDiskModel, disks_image, stub_cfg
from maskrcnnpp.data.synthetic import to_record

DIAMETERS = (9.0, 20.0, 44.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scaled_eval")
    records = []
    for k, diameter in enumerate(DIAMETERS):
        image, masks = disks_image((240, 280), diameter, 12, seed=k)
        path = str(folder / f"disks_{k}.png")
        Image.fromarray(image).save(path)
        records.append(to_record(path, k, image, masks))
    fill_missing_diameters(records)
    name = "scale_policy_synthetic_disks"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(thing_classes=["nucleus"], evaluator_type="nuclei")
    return name, records


def diameter_cfg(dataset_name, output_dir, source="estimate"):
    cfg = stub_cfg()
    cfg.TEST.DIAMETER_SOURCE = source
    cfg.TEST.NUCLEI.COCO_AP = False
    cfg.DATASETS.TEST = (dataset_name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OUTPUT_DIR = str(output_dir)
    return cfg


@pytest.mark.parametrize("source", ["estimate", "ground_truth"])
def test_wrapper_predicts_each_image_at_its_diameter(dataset, tmp_path, source):
    name, records = dataset
    cfg = diameter_cfg(name, tmp_path, source)
    assert build_nuclei_augmentation(cfg, is_train=False) == []  # images keep their size
    mapper = DatasetMapper(cfg, False, augmentations=[])
    wrapper = DiameterScaledModel(cfg, StubDiskModel())
    wrapper.eval()
    for record in records:
        output = wrapper([mapper(record)])[0]["instances"]
        assert output.image_size == (record["height"], record["width"])
        assert len(output) == len(record["annotations"])
        assert output.pred_masks.shape[1:] == (record["height"], record["width"])
    for (file_name, diameter, used), record in zip(wrapper.diameters, records):
        assert used == ("given" if source == "ground_truth" else "search")
        assert diameter == pytest.approx(record["median_diameter"], rel=0.1)


def test_trainer_test_evaluates_at_the_working_scale(dataset, tmp_path):
    name, records = dataset
    cfg = diameter_cfg(name, tmp_path)
    results = Trainer.test(cfg, StubDiskModel())
    metrics = results["nuclei"] if "nuclei" in results else results[name]["nuclei"]
    assert metrics["num_images"] == len(DIAMETERS)
    assert metrics["dsb_map"] > 0.8


def test_only_the_diameter_policy_wraps_the_model(dataset, tmp_path, monkeypatch):
    from detectron2.engine import DefaultTrainer

    seen = []
    record_model = classmethod(lambda cls, cfg, model, evaluators=None: seen.append(model))
    monkeypatch.setattr(DefaultTrainer, "test", record_model)
    model = StubDiskModel()
    cfg = diameter_cfg(dataset[0], tmp_path)
    Trainer.test(cfg, model)
    cfg.INPUT.SCALE_POLICY = "image_size"
    Trainer.test(cfg, model)
    assert isinstance(seen[0], DiameterScaledModel) and seen[0].model is model
    assert seen[1] is model
