"""The diameter estimate's search (predict/estimate.py) against a stub whose measurements are
biased towards the working diameter, as a trained detector's are far from its scale."""
import math

import numpy as np
import pytest

from maskrcnnpp.predict.estimate import MAX_PASSES, central_region, checked_diameter, estimate_diameter
from maskrcnnpp.predict.predictor import CroppedMask, Detection

TARGET = 17.0


def fake_detection(area, y0=10, x0=10, score=0.9):
    side = int(math.ceil(math.sqrt(area)))
    bits = np.zeros((side, side), dtype=bool)
    bits.flat[: int(area)] = True
    return Detection((x0, y0, x0 + side, y0 + side), score, 1, CroppedMask(y0, x0, bits))


class BiasedDetector:
    """Nuclei of ``truth`` px measured as guess * (truth / guess) ** keep: the further the
    nuclei are from the working scale, the more the measurement is pulled towards it."""

    def __init__(self, truth, keep, count=9):
        self.truth, self.keep, self.count = truth, keep, count
        self.calls = []  # (shape of the part predicted, guess)

    def __call__(self, part, guess):
        self.calls.append((part.shape[:2], guess))
        measured = guess * (self.truth / guess) ** self.keep
        area = math.pi * measured ** 2 / 4
        return [fake_detection(area, y0=30 + 2 * k, x0=30) for k in range(self.count)]


def confident(detection):
    return detection.score >= 0.5


@pytest.mark.parametrize("truth", [6.0, 11.0, 24.0, 48.0, 80.0])
def test_biased_measurements_are_corrected_within_15_percent(truth):
    detector = BiasedDetector(truth, keep=0.5)
    image = np.zeros((400, 400, 3), np.uint8)
    estimate = estimate_diameter(detector, image, 17.0, TARGET, 256, confident)
    assert estimate.diameter == pytest.approx(truth, rel=0.15)
    assert estimate.passes <= MAX_PASSES


def test_each_pass_sees_only_the_centre_of_a_large_image():
    detector = BiasedDetector(17.0, keep=1.0)
    image = np.zeros((3000, 2000, 3), np.uint8)
    estimate = estimate_diameter(detector, image, 17.0, TARGET, 256, confident)
    assert estimate.diameter == pytest.approx(17.0, rel=0.01) and estimate.passes == 1
    assert detector.calls == [((256, 256), 17.0)]
    assert estimate.detections is None  # a part of the image: the caller predicts it whole


def test_a_small_image_within_tolerance_gives_its_pass_back():
    detector = BiasedDetector(18.0, keep=1.0)
    image = np.zeros((200, 240, 3), np.uint8)
    estimate = estimate_diameter(detector, image, 17.0, TARGET, 256, confident)
    assert estimate.detections is not None and estimate.detections_diameter == 17.0


def test_nuclei_cut_by_the_centre_square_are_not_measured():
    def predict(part, guess):
        whole = [fake_detection(math.pi * 20 ** 2 / 4, y0=100, x0=100) for _ in range(3)]
        cut = [fake_detection(30, y0=0, x0=50) for _ in range(5)]  # slivers at the square's top
        return whole + cut

    image = np.zeros((1000, 1000, 3), np.uint8)
    estimate = estimate_diameter(predict, image, 20.0, 20.0, 256, confident)
    assert estimate.diameter == pytest.approx(20.0, rel=0.05)


def test_an_empty_centre_falls_back_to_the_whole_image_once():
    calls = []

    def predict(part, guess):
        calls.append(part.shape[:2])
        return [] if part.shape[:2] != (900, 900) else [fake_detection(math.pi * 17 ** 2 / 4)]

    image = np.zeros((900, 900, 3), np.uint8)
    estimate = estimate_diameter(predict, image, 17.0, TARGET, 256, confident)
    assert calls == [(256, 256), (900, 900)]
    assert estimate.diameter == pytest.approx(17.0, rel=0.05) and estimate.detections is not None


def test_nothing_anywhere_gives_no_diameter():
    image = np.zeros((900, 900, 3), np.uint8)
    estimate = estimate_diameter(lambda part, guess: [], image, 17.0, TARGET, 256, confident)
    assert estimate.diameter is None and estimate.detections == [] and estimate.detections_diameter == 17.0


def test_low_scores_are_not_measured():
    def predict(part, guess):
        return [fake_detection(math.pi * 30 ** 2 / 4)] * 3 + [fake_detection(4, score=0.1)] * 20

    estimate = estimate_diameter(predict, np.zeros((300, 300, 3), np.uint8), 30.0, 30.0, 256, confident)
    assert estimate.diameter == pytest.approx(30.0, rel=0.05)


def test_central_region_is_centred_and_clipped():
    assert central_region(100, 50, 256) == (0, 100, 0, 50)
    assert central_region(1000, 600, 256) == (372, 628, 172, 428)


def test_the_size_head_s_reading_is_checked_by_the_nuclei_found_at_it():
    shape = (200, 200)
    at_40 = [fake_detection(math.pi * 40 ** 2 / 4, y0=60, x0=60 + k) for k in range(3)]
    # nuclei of 40 px found at a reading of 20: predict again at theirs
    assert checked_diameter(at_40, 20.0, 17.0, shape, confident, 0.15) == pytest.approx(40.0, rel=0.05)
    # within the tolerance, or nothing confident: the reading stands
    assert checked_diameter(at_40, 37.0, 17.0, shape, confident, 0.15) is None
    faint = [fake_detection(400, score=0.2)]
    assert checked_diameter(faint, 20.0, 17.0, shape, confident, 0.15) is None
    # the measurement is clamped as every estimate is (8x the default)
    huge = [fake_detection(math.pi * 190 ** 2 / 4, y0=0, x0=0)]
    assert checked_diameter(huge, 17.0, 17.0, (400, 400), confident, 0.15) == pytest.approx(8 * 17.0)
