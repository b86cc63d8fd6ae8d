"""The crop sampler against TensorFlow's `sample_distorted_bounding_box` (20,000 windows per
setting and image shape, tools/make_preprocess_goldens.py): crop area fraction and aspect ratio
by a two-sample Kolmogorov-Smirnov test, and how often the window is the whole image.

Threshold: the KS statistic must stay below the two-sample critical value at alpha = 0.001,
c(alpha) * sqrt((n + m) / (n m)) with c = 1.949 (0.0195 for 20,000 each); our draws use a fixed
seed, so the test is deterministic, and a sampler drawing the aspect ratio log-uniformly or
rounding the height differently exceeds it (checked below). The whole-image count must lie
within 4 standard deviations of the difference of two binomial proportions.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from flaxnets.data.transforms import CROPS, sample_distorted_bounding_box

GOLDENS = np.load(Path(__file__).parent / "goldens" / "preprocess_crop_distribution.npz")
META = json.loads(bytes(GOLDENS["meta"]))
SAMPLES = META["samples"]
KS_CRITICAL = 1.949 * np.sqrt(2 / SAMPLES)


def _reference(key):
    area = np.cumsum(GOLDENS[f"{key}/area"].astype(np.int64)) / 65535
    aspect = np.cumsum(GOLDENS[f"{key}/aspect"].astype(np.int64)) / 4096
    return area, aspect, int(GOLDENS[f"{key}/whole"])


def _ours(setting, height, width, sampler=sample_distorted_bounding_box):
    covered, area_range, aspect_range, attempts = META["settings"][setting]
    rng = np.random.default_rng(0)
    sizes = np.array([sampler(height, width, rng, min_object_covered=covered,
                              area_range=tuple(area_range), aspect_ratio_range=tuple(aspect_range),
                              max_attempts=attempts)[0][2:] for _ in range(SAMPLES)], np.float64)
    area = sizes[:, 0] * sizes[:, 1] / (height * width)
    aspect = sizes[:, 1] / sizes[:, 0]
    whole = int(np.sum((sizes[:, 0] == height) & (sizes[:, 1] == width)))
    # Quantised as the goldens are.
    return np.round(area * 65535) / 65535, np.round(aspect * 4096) / 4096, whole


def test_settings_are_the_flavours():
    for setting, (covered, area_range, aspect_range, attempts) in META["settings"].items():
        flavour = CROPS[setting]
        assert (flavour.min_object_covered or flavour.area_range[0]) == covered
        assert flavour.area_range == tuple(area_range)
        assert flavour.aspect_ratio_range == pytest.approx(tuple(aspect_range))
        assert flavour.max_attempts == attempts


def _cases():
    for setting in sorted(META["settings"]):
        for height, width in META["shapes"]:
            # On the strips most of Inception's 100 attempts per window fail: tens of seconds.
            slow = setting == "inception" and height < 50
            yield pytest.param(setting, height, width, id=f"{setting}-{height}x{width}",
                               marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("setting,height,width", _cases())
def test_sampler_distribution_matches_tensorflow(setting, height, width):
    tf_area, tf_aspect, tf_whole = _reference(f"{setting}/{height}x{width}")
    area, aspect, whole = _ours(setting, height, width)
    assert stats.ks_2samp(area, tf_area).statistic < KS_CRITICAL
    assert stats.ks_2samp(aspect, tf_aspect).statistic < KS_CRITICAL
    p = (whole + tf_whole) / (2 * SAMPLES)
    assert abs(whole - tf_whole) / SAMPLES <= 4 * np.sqrt(2 * p * (1 - p) / SAMPLES) + 1 / SAMPLES


def test_the_test_rejects_a_log_uniform_aspect_ratio():
    def log_uniform(height, width, rng, aspect_ratio_range, **kw):
        low, high = np.log(aspect_ratio_range)

        class LogRng:
            def uniform(self, a, b):
                return float(np.exp(rng.uniform(low, high)))

            def __getattr__(self, name):
                return getattr(rng, name)

        return sample_distorted_bounding_box(height, width, LogRng(),
                                             aspect_ratio_range=aspect_ratio_range, **kw)

    _, tf_aspect, _ = _reference("inception/375x500")
    _, aspect, _ = _ours("inception", 375, 500, sampler=log_uniform)
    assert stats.ks_2samp(aspect, tf_aspect).statistic > KS_CRITICAL
