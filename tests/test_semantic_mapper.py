"""The semantic (foreground) dataset mapper: union of instance masks, random patches, padding."""
import numpy as np
from detectron2.config import get_cfg

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.data.semantic_mapper import SemanticNucleiMapper, foreground_mask
from maskrcnnpp.data.synthetic import make_dataset


def make_cfg(patch_size):
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.MODEL.UNETPP.PATCH_SIZE = patch_size
    return cfg


def test_mapper_gives_the_union_of_instances_and_random_patches(tmp_path):
    records = make_dataset(str(tmp_path), num_images=1, size=(80, 120))
    record = records[0]
    union = foreground_mask(record["annotations"], 80, 120)
    assert union.dtype == np.uint8 and set(np.unique(union)) == {0, 1}
    assert union.sum() > 0

    cfg = make_cfg(32)
    whole = SemanticNucleiMapper(cfg, False)(record)
    assert whole["image"].shape == (3, 80, 120) and "sem_seg" not in whole

    exact = SemanticNucleiMapper(
        True, image_format="BGR", patch_size=240, horizontal_flip=False, vertical_flip=False
    )(record)
    # A patch larger than the image: the whole image, padded with the ignore value.
    assert exact["image"].shape == (3, 240, 240)
    np.testing.assert_array_equal(exact["sem_seg"][:80, :120].numpy(), union)
    assert (exact["sem_seg"][80:] == 255).all() and (exact["sem_seg"][:, 120:] == 255).all()

    cfg.MODEL.UNETPP.PATCH_SIZE = 32
    patch = SemanticNucleiMapper(cfg, True)(record)
    assert patch["image"].shape == (3, 32, 32) and patch["sem_seg"].shape == (32, 32)
    assert set(patch["sem_seg"].unique().tolist()) <= {0, 1}
