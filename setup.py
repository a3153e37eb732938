#!/usr/bin/env python
"""Mask R-CNN++ for Detectron2: a UNet++ nested-decoder backbone and semantic UNet++."""
from setuptools import find_packages, setup

setup(
    name="maskrcnnpp",
    version="0.1.0",
    description="Mask R-CNN++ and UNet++ (nested skip connections) for Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=find_packages(include=["maskrcnnpp", "maskrcnnpp.*"]),
    # The split file, the embedded DSB2018 sample and the model zoo's models ship with the package
    # so that dataset registration and maskrcnnpp://<name> work from any install, not only an editable one.
    package_data={"maskrcnnpp.data": ["builtin/*.json", "builtin/sample/*", "builtin/sample/*/*"],
                  "maskrcnnpp.model_zoo": ["*/*"]},
    include_package_data=True,
    # torch, torchvision and detectron2 are installed by install.sh (see README):
    # neither pip nor the registry can pick the right builds on its own.
    install_requires=[
        "numpy",
        "Pillow",
        "pycocotools>=2.0.2",
        "fvcore",
        "matplotlib",
        "tqdm",
        "opencv-python-headless",
        "tifffile",  # 32-bit label images (StarDist), TIFF inputs
        "roifile",  # ImageJ/Fiji ROI sets written by predict
        "hydra-core>=1.1",  # LazyConfig key=value overrides (Detectron2 parses them with it)
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout", "pytest-xdist>=3.2"]},
    # Each user-facing command; tools/<name>.py runs the same main from a checkout.
    # (tools/train_net.py stays Detectron2's one readable script; benchmarks need a checkout.)
    entry_points={
        "console_scripts": [
            "maskrcnnpp-demo=maskrcnnpp.demo:main",
            "maskrcnnpp-prepare-dsb2018=maskrcnnpp.data.prepare_dsb2018:main",
            "maskrcnnpp-import-labels=maskrcnnpp.data.import_labels:main",
            "maskrcnnpp-predict=maskrcnnpp.predict.cli:main",
            "maskrcnnpp-train-size-head=maskrcnnpp.engine.size_head_training:main",
            "maskrcnnpp-evaluate-gt-as-predictions=maskrcnnpp.evaluation.gt_as_predictions:main",
            "maskrcnnpp-synthetic-coco=maskrcnnpp.data.synthetic_coco:main",
        ]
    },
)
