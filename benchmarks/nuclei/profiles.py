"""The Mask R-CNN vs Mask R-CNN++ comparison's profiles, screens and summary tables, as data.

A profile says what it runs (configs, seeds, overrides, the input its GFLOPs are counted at),
in words (``description``, the reports' setting) and why (``purpose``, listed by
``python -m benchmarks compare --help``). ``runner`` runs a profile; ``report`` and
``summaries`` render it.
"""
from dataclasses import dataclass, field

MODELS = {"fpn": "Mask R-CNN (FPN)", "nested": "Mask R-CNN++ (nested FPN)"}
R18 = {"fpn": "configs/nuclei/mask_rcnn_R_18_FPN_cpu.yaml",
       "nested": "configs/nuclei/mask_rcnn_R_18_NestedFPN_cpu.yaml"}


@dataclass(frozen=True)
class Profile:
    seeds: tuple
    description: str
    purpose: str
    opts: tuple = ()  # KEY VALUE overrides applied to every model alike
    configs: dict = field(default_factory=lambda: dict(R18))  # model key -> config file, from the repository
    test_size: int = 256  # square input side at which GFLOPs are counted
    timed: bool = True  # False: the schedule is a plan, not measured on its machine
    model_opts: tuple = ()  # (model key, (KEY, VALUE, ...)) pairs: overrides for one model only
    fpn_runs_from: str = ""  # another profile whose FPN runs this one shares instead of training its own
    baseline: str = ""  # another profile whose results the report shows beside this one's, group by group
    weights_from: str = ""  # another profile whose trained model (same model and seed) each run starts from
    train_minutes: float = 0.0  # > 0: train for this wall-clock budget instead of MAX_ITER (budget.py)

    def opts_for(self, model):
        return list(self.opts) + [v for m, opts in self.model_opts if m == model for v in opts]


R101 = {"fpn": "configs/nuclei/mask_rcnn_R_101_FPN.yaml",
        "nested": "configs/nuclei/mask_rcnn_R_101_NestedFPN.yaml"}

VAL = ("DATASETS.TEST", "('dsb2018_val',)")
# The nested FPN of the final comparison: the best cost-matched variant of the val screen
# (neck_ablation_val.md, at least 4 channels per GroupNorm group), which the configs ship.
FINAL_NESTED_NAME = "val-nested-gn4"
# 32 GroupNorm groups at every node (one channel per group at the 32-channel stride-4 nodes): the
# nested FPN of the profiles that carry it, as their committed runs trained it.
GN32 = ("MODEL.NESTED_FPN.GN_MIN_CHANNELS_PER_GROUP", "0")
NESTED_GN32 = (("nested", GN32),)
# Detectron2's resize by image size, in place of the nuclei configs' rescaling by nucleus diameter.
IMAGE_SIZE = ("INPUT.SCALE_POLICY", "image_size")
SCALE_SCREEN = ("scale-policy screen on val (run with --model fpn: the policy is the model's input, "
                "not its neck); the winner is the nuclei configs' policy")
# val-long's schedule: 2400 iterations, learning rate x0.1 at 1800 and 2200.
LONG = ("SOLVER.MAX_ITER", "2400", "SOLVER.STEPS", "(1800, 2200)", "SOLVER.CHECKPOINT_PERIOD", "400")
LIGHT_HEADS = ("MODEL.ROI_MASK_HEAD.NUM_CONV", "2", "MODEL.ROI_BOX_HEAD.FC_DIM", "256")
NECK_SCREEN = ("neck ablation on val (run with --model nested; FPN is val-diameter-17's): which nested "
               "FPN the nuclei configs ship")



def scale_screen(opts, change):
    """A one-seed variant of val-diameter-17 on the scale-policy screen."""
    return Profile(seeds=(0,), opts=VAL + opts, model_opts=NESTED_GN32,
                   description=f"as val-diameter-17 {change}", purpose=SCALE_SCREEN)


def neck_screen(nested_opts, description, why=""):
    """A nested-FPN variant on the neck ablation screen, beside val-diameter-17's FPN runs."""
    return Profile(seeds=(0, 1, 2), opts=VAL, fpn_runs_from="val-diameter-17",
                   model_opts=(("nested", nested_opts),) if nested_opts else (),
                   description=description, purpose=NECK_SCREEN + why)


ZOO_MODEL = "R18_NestedFPN_dsb2018"
OWN_DATA_SIZES = (10, 30)
# The fine-tuning benchmark's own data: colour images of dsb2018_train_fixed as a folder of images
# and one of label images (datasets/make_own_colour_sets.py), imported as colour<N> by import_labels.
OWN_DATA_SCHEDULE = ("SOLVER.MAX_ITER", "200", "SOLVER.WARMUP_ITERS", "20", "SOLVER.STEPS", "(150,)",
                     "SOLVER.CHECKPOINT_PERIOD", "100", "DATASETS.TEST", "('dsb2018_test_colour',)")


def own_data_profile(size, arm):
    """Mask R-CNN++ trained for 200 iterations on ``size`` own colour images, from scratch at the
    config's learning rate or from the zoo model at half of it (it starts trained)."""
    start = ("MODEL.WEIGHTS", f"maskrcnnpp://{ZOO_MODEL}", "SOLVER.BASE_LR", "0.005") if arm == "zoo" else ()
    return Profile(
        seeds=(0, 1, 2), opts=("DATASETS.TRAIN", f"('colour{size}_train',)") + OWN_DATA_SCHEDULE + start,
        description=(f"the R-18 nested CPU config trained 200 iterations (x0.1 at 150) on {size} colour images "
                     "of dsb2018_train_fixed imported with import_labels, "
                     + (f"starting from the zoo model {ZOO_MODEL} at learning rate 0.005"
                        if arm == "zoo" else "from scratch at the config's learning rate 0.01")
                     + "; scored on the colour images of dsb2018_test"),
        purpose=f"fine-tuning from the zoo (run with --model nested): {size} own images, "
                + ("the zoo model fine-tuned" if arm == "zoo" else "from scratch"))


PROFILES = {
    "cpu-small": Profile(
        seeds=(0, 1, 2), opts=IMAGE_SIZE, model_opts=NESTED_GN32,
        description="ResNet-18, light heads, short side 256, batch 2, 600 iterations "
                    "(the *_R_18_*_cpu.yaml configs with INPUT.SCALE_POLICY image_size), trained on "
                    "dsb2018_train (335 images), tested on dsb2018_test (201 images)",
        purpose="the test-split comparison with images resized by their size, as Detectron2 does; "
                "cpu-scale's baseline"),
    "cpu-scale": Profile(
        seeds=(0, 1, 2), baseline="cpu-small", model_opts=NESTED_GN32,
        description="ResNet-18, light heads, batch 2, 600 iterations, the *_R_18_*_cpu.yaml configs "
                    "as they are: each training image rescaled so that its median nucleus is 17 px "
                    "(x 0.8-1.25 jitter), 256 px crops; tested at the estimated diameter in 512 px "
                    "tiles; trained on dsb2018_train (335 images), tested on dsb2018_test (201 images)",
        purpose="cpu-small's schedule with nuclei at their own scale (the configs' policy), shown "
                "beside cpu-small"),
    "gpu-paper": Profile(
        configs=R101, seeds=(0, 1, 2),
        # Sized, not yet timed, for one run (start, train, test on 201 images) in one
        # device command of under 9 minutes on one H100: about 0.25-0.3 s/iter expected
        # at batch 8, leaving ~2 minutes to test. Checkpoints every 300 iterations let a
        # cut-off run resume on the same (still warm) machine.
        opts=("MODEL.DEVICE", "cuda", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.BASE_LR", "0.02",
              "SOLVER.MAX_ITER", "1200", "SOLVER.WARMUP_ITERS", "150",
              "SOLVER.STEPS", "(900, 1100)", "SOLVER.CHECKPOINT_PERIOD", "300",
              "DATALOADER.NUM_WORKERS", "8"),
        test_size=512, timed=False,
        description="ResNet-101, the paper-sized configs (4conv1fc box head, 256-channel "
                    "pyramid; nuclei rescaled to 17 px, x 0.8-1.25, in 512 px training crops; tested "
                    "at the estimated diameter in 512 px tiles), batch 8, 1200 iterations (about 29 epochs of dsb2018_train) on one H100; "
                    "the schedule is planned, not yet timed there",
        purpose="the paper's regime, ResNet-101 on a GPU, one run per command (--model, --seeds K)"),
    "cpu-small-nested64": Profile(
        seeds=(0, 1, 2), opts=IMAGE_SIZE,
        model_opts=(("nested", ("MODEL.NESTED_FPN.NODE_CHANNELS", "[64, 64, 128, 128]") + GN32),),
        fpn_runs_from="cpu-small",
        description="cpu-small (ResNet-18, light heads, short side 256, batch 2, 600 iterations, "
                    "dsb2018_train -> dsb2018_test) with the nested FPN's node widths raised from "
                    "32/64/128/128 to 64/64/128/128; the FPN runs are cpu-small's",
        purpose="ablation: the finest node level, where small nuclei are found, at 64 channels "
                "(whole-model GFLOPs within 1 % of FPN's, backbone+neck +11 %)"),
    "val-image-size": Profile(
        seeds=(0,), opts=VAL + IMAGE_SIZE, model_opts=NESTED_GN32,
        description="cpu-small's schedule (ResNet-18, light heads, 600 iterations, batch 2) with "
                    "images resized by their size (short side 256), scored on dsb2018_val",
        purpose=SCALE_SCREEN),
    "val-diameter-17": Profile(
        seeds=(0, 1, 2), opts=VAL, model_opts=NESTED_GN32,
        description="cpu-small's schedule, images scaled so that their median nucleus is 17 px "
                    "(x 0.8-1.25 jitter), 256 px training crops; tested in 512 px tiles at the "
                    "estimated diameter; scored on dsb2018_val",
        purpose=SCALE_SCREEN + "; its FPN runs are the neck ablations' reference"),
    "val-diameter-12": scale_screen(("INPUT.NUCLEUS_DIAMETER", "12.0"), "with a 12 px working diameter"),
    "val-diameter-24": scale_screen(("INPUT.NUCLEUS_DIAMETER", "24.0"), "with a 24 px working diameter"),
    "val-diameter-17-jitter-wide": scale_screen(
        ("INPUT.DIAMETER_JITTER", "(0.5, 2.0)"),
        "with a wider scale jitter, x 0.5-2.0 (nuclei of 8.5-34 px in training)"),
    "val-diameter-17-crop384": scale_screen(
        ("INPUT.DIAMETER_CROP_SIZE", "384"), "with 384 px training crops instead of 256 px"),
    "val-nested-gn4": neck_screen(
        (), "as val-diameter-17, with the nested FPN's GroupNorms keeping at least 4 channels per group (8 groups at the "
            "32-channel stride-4 nodes, 16 at 64; 32 at 128 as in FPN) instead of 32 groups everywhere (one "
            "channel per group at stride 4)"),
    "val-nested-faithful": neck_screen(
        ("MODEL.NESTED_FPN.NODE_CHANNELS", "[128, 128, 128, 128]", "MODEL.NESTED_FPN.BLOCK", "double_conv") + GN32,
        "as val-diameter-17, with the paper's Mask RCNN++ grid: every node at the pyramid's width (128) and the paper's node "
        "block (two 3×3 convs) instead of the cost-matched 32/64/128/128 nodes with a 1×1 fuse and one 3×3"),
    "val-nested64-gn4": neck_screen(
        ("MODEL.NESTED_FPN.NODE_CHANNELS", "[64, 64, 128, 128]"),
        "as val-nested-gn4 (at least 4 channels per GroupNorm group) with the stride-4 nodes at 64 channels "
        "instead of 32 (64/64/128/128)",
        why="; the cheapest variant that widens p2, the level every nucleus' RoI features are pooled from"),
    "val-long": Profile(
        seeds=(0,), opts=VAL + LONG,
        description="as val-diameter-17 trained 4x longer: 2400 iterations, learning rate x0.1 at "
                    "1800 and 2200; the nested FPN as in val-nested-gn4",
        purpose="training length on val: whether 4x cpu-small's 600 iterations (14 epochs) changes the "
                "verdict"),
    "val-long-light-heads": Profile(
        seeds=(0,), opts=VAL + LONG + LIGHT_HEADS, baseline="val-long",
        description="as val-long with lighter ROI heads: 2 mask-head convs instead of 4 and a 256-wide "
                    "box head instead of 512",
        purpose="prediction speed on val (run with --model nested): whether the heads, a third of the "
                "time per image, can be lighter at the same accuracy"),
    "cpu-23min": Profile(
        seeds=(0, 1, 2), train_minutes=23.0,
        description="the R-18 CPU configs as cpu-scale (nuclei at 17 px, 256 px crops, batch 2), the nested "
                    f"FPN as in {FINAL_NESTED_NAME}; each model trained for 23 minutes of wall-clock "
                    "(iterations from a probe of its own speed, learning-rate steps at 75 % and 92 % of "
                    "them), on dsb2018_train, tested on dsb2018_test",
        purpose="equal training wall-clock: the 23 minutes StarDist 2D was given on the same 2-core CPU; "
                "run one model at a time with both cores (OMP_NUM_THREADS=2)"),
    "cpu-final": Profile(
        seeds=(0, 1, 2, 3, 4), fpn_runs_from="cpu-scale",
        description="cpu-scale (ResNet-18, light heads, batch 2, 600 iterations, nuclei at 17 px, 256 px "
                    f"crops; estimated diameter at test) with the nested FPN as in {FINAL_NESTED_NAME}, "
                    "the best cost-matched variant on dsb2018_val; trained on dsb2018_train, tested on "
                    "dsb2018_test; the FPN runs are cpu-scale's",
        purpose="the final comparison at equal iterations, 5 seeds, the nested FPN chosen on val; its FPN "
                "runs are cpu-scale's (seeds 3 and 4 added there with --seeds 3 4)"),
    "finetune-grey": Profile(
        seeds=(0, 1, 2),
        opts=("DATASETS.TRAIN", "('dsb2018_train_grey',)", "DATASETS.TEST", "('dsb2018_test_colour',)"),
        description="the R-18 CPU config (600 iterations, batch 2, nuclei at 17 px) trained on the grey "
                    "(fluorescence) images of dsb2018_train only, scored on the colour images of dsb2018_test",
        purpose="fine-tuning, step 1 (run with --model fpn): how a model that saw only fluorescence "
                "scores on stained nuclei"),
    "finetune-colour": Profile(
        seeds=(0, 1, 2), weights_from="finetune-grey",
        # A short schedule at half the learning rate: the model starts trained.
        opts=("DATASETS.TRAIN", "('dsb2018_train_colour',)", "DATASETS.TEST", "('dsb2018_test_colour',)",
              "SOLVER.MAX_ITER", "200", "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "20",
              "SOLVER.STEPS", "(150,)", "SOLVER.CHECKPOINT_PERIOD", "100"),
        description="finetune-grey's model of the same seed fine-tuned 200 iterations (learning rate "
                    "0.005, x0.1 at 150) on the colour images of dsb2018_train, scored on the colour "
                    "images of dsb2018_test",
        purpose="fine-tuning, step 2 (run with --model fpn): what 200 iterations on colour images add"),
    **{f"own{n}-{arm}": own_data_profile(n, arm) for n in OWN_DATA_SIZES for arm in ("scratch", "zoo")},
    "smoke": Profile(
        seeds=(0, 1),
        opts=IMAGE_SIZE + ("DATASETS.TRAIN", "('dsb2018_sample_train',)",
              "DATASETS.TEST", "('dsb2018_sample_val',)",
              "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "256",
              "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
              "SOLVER.MAX_ITER", "5", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
              "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "0"),
        test_size=128,
        description="ResNet-18 CPU configs on the embedded sample (8 train / 4 val images), "
                    "5 iterations at 128 px: a plumbing check, not a comparison",
        purpose="a plumbing check of the whole job in minutes"),
}


# Screens: profiles scored on val whose rows make one table (results/<name>.md), rebuilt whenever
# one of them is run or rendered. Every row stays, the losers too.
SCREENS = {
    "scale_policy_val": {
        "title": "Scale policy screen on dsb2018_val",
        "profiles": ("val-image-size", "val-diameter-12", "val-diameter-17", "val-diameter-24",
                     "val-diameter-17-jitter-wide", "val-diameter-17-crop384"),
    },
    "neck_ablation_val": {
        "title": "Mask R-CNN++ neck ablations on dsb2018_val",
        "profiles": ("val-diameter-17", "val-nested-gn4", "val-nested-faithful", "val-nested64-gn4",
                     "val-long"),
    },
}


# Tables of runs scored on the colour test images (for cpu-scale, which is tested on all of them,
# its colour images only): one row per profile, and paired (after, before, heading) differences.
FINE_TUNING = {
    "fine_tuning_colour": {
        "title": "Fine-tuning onto colour (brightfield/H&E) nuclei",
        "note": "Mask R-CNN (R-18 FPN CPU config, nuclei at 17 px), mean ± std over seeds, on the colour "
                "images of dsb2018_test.",
        "model": "fpn",
        "rows": (("trained on grey images only, 600 iterations", "finetune-grey"),
                 ("then fine-tuned on colour images, +200 iterations", "finetune-colour"),
                 ("trained on all training images, 600 iterations", "cpu-scale")),
        "pairs": (("finetune-colour", "finetune-grey", "Fine-tuned − grey only"),),
    },
    "fine_tuning_zoo": {
        "title": "Fine-tuning the zoo model on a few own images",
        "note": f"Mask R-CNN++ (R-18 nested CPU config), 200 iterations on 10 or 30 colour images of "
                f"dsb2018_train_fixed imported with import_labels, from scratch or from the zoo model "
                f"`{ZOO_MODEL}`; mean ± std over seeds, on the 32 colour images of dsb2018_test. The zoo "
                f"model was trained on dsb2018_train_fixed and dsb2018_val_fixed, these images included; "
                f"no test image.",
        "model": "nested",
        "rows": tuple((f"{n} images, {'from the zoo model' if arm == 'zoo' else 'from scratch'}", f"own{n}-{arm}")
                      for n in OWN_DATA_SIZES for arm in ("scratch", "zoo")),
        "pairs": tuple((f"own{n}-zoo", f"own{n}-scratch", f"{n} images, zoo − scratch") for n in OWN_DATA_SIZES),
    },
}


# The nuclei peer, with its published figures (not re-run in this repository).
STARDIST = {
    "label": "peer (published figures)", "name": "StarDist 2D",
    "fg_iou": 72.57, "fg_dice": 83.37, "dsb_map": 0.380, "infer_s": 0.35, "train_min": 23.0,
    "source": "StarDist 2D trained from scratch on this repository's dsb2018_train for 23 minutes on "
              "the same 2-core CPU (32 rays, 256 px patches, thresholds optimised on dsb2018_val), "
              "scored on dsb2018_test with the same metrics; figures as published with the request for "
              "this comparison, not re-run here (StarDist is not a dependency). Its 0.35 s/img is wall "
              "time per image.",
}

# The final table: the equal-iterations pair over 5 seeds, the equal wall-clock pair, and the peer;
# the decision is the pair's paired difference, and its costs against the goals.
FINAL = {
    "file": "nuclei_final_test.md",
    "title": "Mask R-CNN vs Mask R-CNN++ on dsb2018_test: the final comparison",
    "note": "R-18 CPU configs, nuclei at 17 px (estimated diameter at test), mean ± std over seeds; "
            "train CPU s/iter and inference CPU s/img: CPU seconds of all the run's threads (one for "
            "the equal-iteration row; two for the equal wall-clock row, which runs one model at a "
            "time on both cores).",
    "rows": (("equal iterations (600)", "cpu-final"), ("equal wall-clock (23 min)", "cpu-23min")),
    "pair": "cpu-final",
    "peer": STARDIST,
    "max_extra_train": 0.10,
    "max_extra_inference": 0.05,
}
