"""Training and test augmentations for nuclei images."""
from detectron2.data import transforms as T


def build_nuclei_augmentation(cfg, is_train: bool):
    """Detectron2's resize (+ horizontal flip), plus a vertical flip for training:
    microscopy has no up or down, so it doubles the orientations seen for free."""
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.RANDOM_FLIP in ("horizontal", "vertical"):
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    if cfg.INPUT.VERTICAL_FLIP and cfg.INPUT.RANDOM_FLIP != "vertical":
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    return augs
