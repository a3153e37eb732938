"""One COCO-format results file for a whole batch, written as images are processed.

Each record is what ``COCO.loadRes`` expects (image_id, category_id, RLE
segmentation, XYWH bbox, score) plus ``file_name`` (the input image) and
``label`` (the nucleus' value in that image's label image). The segmentation is
the detection's own mask, before overlaps are resolved, as Detectron2's
COCOEvaluator would record it. The file appears under its final name only when
complete, so a crash never leaves a truncated JSON behind.
"""
import json
import os

__all__ = ["RESULTS_FILE_NAME", "CocoResultsWriter", "coco_records"]

RESULTS_FILE_NAME = "coco_instances_results.json"


def coco_records(detections, image_id, file_name, shape):
    """Records of one image's kept detections; ``detections[k - 1]`` has label k."""
    records = []
    for label, det in enumerate(detections, start=1):
        x0, y0, x1, y1 = det.box
        records.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": det.category_id,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "score": round(det.score, 5),
                "segmentation": det.mask.to_rle(shape),
                "label": label,
            }
        )
    return records


class CocoResultsWriter:
    """Streams records into ``<path>.partial``; :meth:`close` renames it to ``path``."""

    def __init__(self, path):
        self.path = path
        self._partial = path + ".partial"
        self._file = open(self._partial, "w", encoding="utf-8")
        self._file.write("[")
        self._count = 0

    def add(self, records):
        for record in records:
            self._file.write(",\n" if self._count else "\n")
            self._file.write(json.dumps(record))
            self._count += 1

    def close(self):
        self._file.write("\n]\n")
        self._file.close()
        os.replace(self._partial, self.path)
        return self._count

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # keep no half-written results under either name
            self._file.close()
            os.remove(self._partial)
