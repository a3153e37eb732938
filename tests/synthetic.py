"""Kept for the test files that import ``synthetic`` by its old name; the helpers live in the package."""
from maskrcnnpp.data.synthetic import ellipse_mask, make_dataset, make_image, to_record  # noqa: F401
