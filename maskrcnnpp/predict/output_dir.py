"""The prediction output folder: layout and an up-front check that it can be written."""
import os
import tempfile

from .errors import PredictError

__all__ = ["OutputLayout", "prepare_output_dir"]


class OutputLayout:
    """``<root>/overlays/<stem>.png``, ``<root>/labels/<stem>.png`` and one results JSON."""

    def __init__(self, root):
        self.root = root
        self.overlays = os.path.join(root, "overlays")
        self.labels = os.path.join(root, "labels")

    def overlay_path(self, stem):
        return os.path.join(self.overlays, stem + ".png")

    def label_path(self, stem):
        return os.path.join(self.labels, stem + ".png")


def prepare_output_dir(root):
    """Create the folders and prove they are writable, before any model is built."""
    layout = OutputLayout(root)
    for folder in (layout.root, layout.overlays, layout.labels):
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            reason = e.strerror or str(e)
            raise PredictError(f"{folder}: output folder cannot be written ({reason})") from None
    return layout
