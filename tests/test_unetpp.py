"""Semantic UNet++: parameter counts, pruning, deep supervision, sliding windows, errors."""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from maskrcnnpp import add_maskrcnnpp_config
from maskrcnnpp.engine.setup import check_config
from maskrcnnpp.modeling.segmentation_loss import bce_and_dice_losses
from maskrcnnpp.modeling.sliding_window import sliding_window_predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "nuclei")
PAPER_FILTERS = [32, 64, 128, 256, 512]
SMALL_FILTERS = [4, 8, 8, 16, 16]


def build_checked(cfg):
    """The model as the commands build it: the config checked when loaded, then built."""
    check_config(cfg)
    return build_model(cfg)


def make_cfg(**unetpp):
    cfg = get_cfg()
    add_maskrcnnpp_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "SemanticUNetPlusPlus"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_STD = [57.0, 57.0, 57.0]
    cfg.MODEL.UNETPP.FILTERS = SMALL_FILTERS
    cfg.MODEL.UNETPP.PATCH_SIZE = 32
    cfg.MODEL.UNETPP.SLIDING_WINDOW.SIZE = 32
    for key, value in unetpp.items():
        setattr(cfg.MODEL.UNETPP, key, value)
    return cfg


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def random_image(height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=g).float()


# The official Keras builders (1-channel input, conv biases, no BN) print these totals;
# the paper's table lists 7.76M, 9.13M (wide U-Net) and 9.04M.
@pytest.mark.parametrize(
    "connectivity, filters, official, paper",
    [
        ("unet", PAPER_FILTERS, 7_759_521, 7.76e6),
        ("unet", [35, 70, 140, 280, 560], 9_282_246, 9.13e6),
        ("unet++", PAPER_FILTERS, 9_041_601, 9.04e6),
    ],
)
def test_parameter_counts_match_the_paper(connectivity, filters, official, paper):
    cfg = make_cfg(CONNECTIVITY=connectivity, FILTERS=filters, DEEP_SUPERVISION=False)
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [128.0], [57.0]
    count = num_params(build_model(cfg))
    assert count == official
    assert abs(count - paper) / paper < 0.03


def test_deep_supervision_adds_only_the_three_extra_heads():
    plain = num_params(build_model(make_cfg(FILTERS=PAPER_FILTERS, DEEP_SUPERVISION=False)))
    ds = num_params(build_model(make_cfg(FILTERS=PAPER_FILTERS, DEEP_SUPERVISION=True)))
    assert ds - plain == 3 * (PAPER_FILTERS[0] + 1)


def test_pruned_sub_networks_have_the_papers_sizes():
    model = build_model(make_cfg(FILTERS=PAPER_FILTERS))
    sizes = [num_params(model.pruned(k)) for k in range(1, 5)]
    # Paper: L1 0.1M, L2 0.5M, L3 2.2M, L4 9.0M.
    assert [round(s / 1e6, 1) for s in sizes] == [0.1, 0.5, 2.2, 9.0]


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_pruned_forward_equals_the_full_models_head(level):
    torch.manual_seed(0)
    model = build_model(make_cfg()).eval()
    images = torch.randn(2, 3, 32, 48)
    full = model.head_logits(images)
    pruned = model.pruned(level).head_logits(images)
    assert list(pruned) == [f"x_0_{level}"]
    torch.testing.assert_close(pruned[f"x_0_{level}"], full[f"x_0_{level}"])


def test_pruned_models_are_smaller_and_share_weights():
    model = build_model(make_cfg())
    pruned = [model.pruned(k) for k in range(1, 5)]
    params = [num_params(p) for p in pruned] + [num_params(model)]
    modules = [len(list(p.modules())) for p in pruned] + [len(list(model.modules()))]
    assert params == sorted(set(params))  # strictly increasing with the level
    assert modules == sorted(set(modules))
    full_ids = {id(p) for p in model.parameters()}
    assert all(id(p) in full_ids for p in pruned[1].parameters())
    assert len(pruned[0].encoder.levels) == 2


def test_pruning_leaves_the_full_model_whole():
    model = build_model(make_cfg()).eval()
    params = [id(p) for p in model.parameters()]
    small = model.pruned(2)
    assert [id(p) for p in model.parameters()] == params
    assert list(model.heads) == ["x_0_1", "x_0_2", "x_0_3", "x_0_4"]
    assert len(model.encoder.levels) == 5 and len(model.decoder.nodes) == 10
    assert small.training is False and small.inference_mode == "L2"
    assert small.pixel_mean.data_ptr() == model.pixel_mean.data_ptr()


@pytest.mark.parametrize("groups", [4, 8])
def test_group_norm_has_the_configured_number_of_groups(groups):
    model = build_model(make_cfg(NORM="GN", GN_GROUPS=groups, FILTERS=[8, 8, 16, 16, 32]))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2 * 5 + 2 * 10  # two convs per encoder level and per node
    assert {m.num_groups for m in norms} == {groups}


def test_inference_mode_runs_the_pruned_model():
    torch.manual_seed(0)
    model = build_model(make_cfg(INFERENCE="L2")).eval()
    image = random_image(32, 32)
    prob = model([{"image": image, "height": 32, "width": 32}])[0]["sem_seg"]
    normalized = ((image - model.pixel_mean) / model.pixel_std)[None]
    expected = torch.sigmoid(model.head_logits(normalized)["x_0_2"])[0]
    torch.testing.assert_close(prob, expected)


def test_ensemble_averages_the_heads():
    torch.manual_seed(0)
    model = build_model(make_cfg(INFERENCE="ensemble")).eval()
    image = random_image(32, 32)
    prob = model([{"image": image}])[0]["sem_seg"]
    normalized = ((image - model.pixel_mean) / model.pixel_std)[None]
    heads = [torch.sigmoid(x)[0] for x in model.head_logits(normalized).values()]
    assert len(heads) == 4
    torch.testing.assert_close(prob, torch.stack(heads).mean(0))


@pytest.mark.parametrize("connectivity", ["unet++", "unet+", "unet_e"])
def test_every_parameter_gets_a_gradient_under_deep_supervision(connectivity):
    torch.manual_seed(0)
    model = build_model(make_cfg(CONNECTIVITY=connectivity, DEEP_SUPERVISION=True)).train()
    inputs = [
        {"image": random_image(32, 32, s), "sem_seg": (torch.rand(32, 32) > 0.5).long()}
        for s in range(2)
    ]
    losses = model(inputs)
    assert set(losses) == {"loss_bce", "loss_dice"}
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_without_deep_supervision_there_is_one_head():
    model = build_model(make_cfg(DEEP_SUPERVISION=False))
    assert list(model.heads) == ["x_0_4"]


def test_sliding_window_averages_overlapping_windows_exactly():
    image = torch.arange(3 * 50 * 70, dtype=torch.float32).reshape(3, 50, 70)
    calls = []

    def identity(batch):
        calls.append(batch.shape)
        return batch[:, :2]

    out = sliding_window_predict(identity, image, window=32, overlap=0.5, divisor=16, batch_size=3)
    assert out.shape == (2, 50, 70)
    torch.testing.assert_close(out, image[:2])
    assert all(shape[-2:] == (32, 32) for shape in calls)
    assert sum(shape[0] for shape in calls) > 4  # the windows overlap


def test_model_returns_a_full_size_map_for_sides_not_multiple_of_the_window():
    model = build_model(make_cfg()).eval()
    outputs = model([{"image": random_image(50, 70), "height": 50, "width": 70}])
    prob = outputs[0]["sem_seg"]
    assert prob.shape == (1, 50, 70)
    assert ((prob >= 0) & (prob <= 1)).all()
    # Resized input: the map comes back at the original height/width.
    resized = model([{"image": random_image(48, 64), "height": 96, "width": 128}])[0]["sem_seg"]
    assert resized.shape == (1, 96, 128)


def test_resnet_encoder_trains_and_predicts_at_input_size():
    cfg = make_cfg(ENCODER="resnet", FILTERS=[8, 8, 16, 16, 32], PATCH_SIZE=64)
    cfg.MODEL.UNETPP.SLIDING_WINDOW.SIZE = 64
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    model = build_model(cfg)
    assert model.size_divisibility == 32
    losses = model([{"image": random_image(64, 64), "sem_seg": torch.ones(64, 64).long()}])
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert model([{"image": random_image(40, 72)}])[0]["sem_seg"].shape == (1, 40, 72)
    assert num_params(model.pruned(2)) < num_params(model)


def test_resnet_encoder_leaves_group_norm_of_the_unused_deepest_filter_unchecked():
    # The ResNet has MODEL.RESNETS.NORM, and the decoder has no node at the deepest level.
    cfg = make_cfg(ENCODER="resnet", NORM="GN", GN_GROUPS=8, FILTERS=[8, 8, 16, 16, 36],
                   PATCH_SIZE=64)
    cfg.MODEL.UNETPP.SLIDING_WINDOW.SIZE = 64
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    norms = [m for m in build_model(cfg).decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {8}
    cfg.MODEL.UNETPP.FILTERS = [8, 8, 16, 20, 36]
    with pytest.raises(ValueError, match=r"MODEL.UNETPP.FILTERS holds widths \[20\]"):
        build_checked(cfg)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"INFERENCE": "L5"}, "MODEL.UNETPP.INFERENCE='L5' prunes at level 5, deeper than"),
        ({"INFERENCE": "best"}, "MODEL.UNETPP.INFERENCE='best' is not an inference mode"),
        ({"INFERENCE": "L0"}, "MODEL.UNETPP.INFERENCE='L0'"),
        ({"INFERENCE": "L2", "DEEP_SUPERVISION": False}, "MODEL.UNETPP.DEEP_SUPERVISION=True"),
        ({"CONNECTIVITY": "unet", "DEEP_SUPERVISION": True}, "MODEL.UNETPP.DEEP_SUPERVISION"),
        ({"PATCH_SIZE": 40}, "MODEL.UNETPP.PATCH_SIZE=40"),
        ({"FILTERS": [8, 16, 32]}, "MODEL.UNETPP.FILTERS"),
        ({"ENCODER": "vgg"}, "MODEL.UNETPP.ENCODER"),
        (
            {"NORM": "GN", "GN_GROUPS": 8, "FILTERS": [8, 12, 16, 16, 32]},
            "MODEL.UNETPP.GN_GROUPS=8 groups, but MODEL.UNETPP.FILTERS holds widths [12]",
        ),
        ({"NORM": "GN", "GN_GROUPS": -1}, "MODEL.UNETPP.GN_GROUPS=-1 must be a positive"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_checked(make_cfg(**settings))


def test_sliding_window_size_must_fit_the_encoder():
    cfg = make_cfg()
    cfg.MODEL.UNETPP.SLIDING_WINDOW.SIZE = 40
    with pytest.raises(ValueError, match="MODEL.UNETPP.SLIDING_WINDOW.SIZE=40"):
        build_checked(cfg)


def test_image_with_unexpected_channels_names_the_setting():
    model = build_model(make_cfg()).eval()
    with pytest.raises(ValueError, match=r"MODEL.PIXEL_MEAN"):
        model([{"image": torch.zeros(4, 32, 32)}])


def test_loss_is_low_for_a_perfect_prediction_and_skips_ignored_pixels():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    perfect = (target.float() * 40 - 20)[:, None]
    bce, dice = bce_and_dice_losses(perfect, target)
    assert bce < 1e-6 and dice < 1e-6
    wrong = -perfect
    assert all(x > 0.5 for x in bce_and_dice_losses(wrong, target))
    ignored = target.clone()
    ignored[:, :, 4:] = 255
    half_wrong = perfect.clone()
    half_wrong[..., 4:] *= -1  # wrong only where the target is ignored
    bce, dice = bce_and_dice_losses(half_wrong, ignored)
    assert bce < 1e-6 and dice < 1e-6


def test_cpu_comparison_configs_differ_only_in_the_model():
    from maskrcnnpp.engine.setup import load_cfg

    names = ("unet", "wide_unet", "unetpp_ds")
    cfgs = {n: load_cfg(os.path.join(CONFIGS, f"{n}_cpu.yaml")) for n in names}
    for cfg in cfgs.values():
        cfg.MODEL.UNETPP.FILTERS = None
        cfg.MODEL.UNETPP.CONNECTIVITY = None
        cfg.MODEL.UNETPP.DEEP_SUPERVISION = None
        cfg.MODEL.UNETPP.INFERENCE = None
    dumps = {n: c.dump() for n, c in cfgs.items()}
    assert dumps["unet"] == dumps["wide_unet"] == dumps["unetpp_ds"]
    assert cfgs["unet"].MODEL.META_ARCHITECTURE == "SemanticUNetPlusPlus"


@pytest.mark.parametrize(
    "name, millions",
    [
        ("unet", 7.76),
        ("wide_unet", 9.28),
        ("unet_e", 8.73),
        ("unet_plus", 8.73),
        ("unetpp", 9.04),
        ("unetpp_ds", 9.04),
        ("unetpp_ds_R_50", None),
    ],
)
def test_every_semantic_config_builds(name, millions):
    from maskrcnnpp.engine.setup import load_cfg

    cfg = load_cfg(os.path.join(CONFIGS, f"{name}.yaml"), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    if millions is not None:
        assert round(num_params(model) / 1e6, 2) == millions
    else:
        assert model.size_divisibility == 32
