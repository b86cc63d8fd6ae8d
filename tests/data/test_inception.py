"""TF-slim colour distortion (flaxnets.data.inception): the ops' identities and HSV semantics
(their parity with TensorFlow is in test_reference_parity.py) and the random orderings."""

import cv2
import numpy as np
import pytest

from flaxnets.data import inception


def _image(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (6, 7, 3)).astype(np.float32)


def test_neutral_factors_are_identities():
    image = _image()
    np.testing.assert_allclose(inception.adjust_brightness(image, 0.0), image)
    np.testing.assert_allclose(inception.adjust_saturation(image, 1.0), image, atol=1e-3)
    np.testing.assert_allclose(inception.adjust_hue(image, 0.0), image, atol=1e-3)
    np.testing.assert_allclose(inception.adjust_contrast(image, 1.0), image, atol=1e-3)


def test_saturation_and_hue_agree_with_opencv_hsv():
    image = _image(1)
    hsv = cv2.cvtColor(image / 255, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.4, 0, 1)
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    np.testing.assert_allclose(inception.adjust_saturation(image, 1.4), expected, atol=0.05)
    hsv = cv2.cvtColor(image / 255, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + 0.15 * 360) % 360
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    np.testing.assert_allclose(inception.adjust_hue(image, 0.15), expected, atol=0.05)


def test_saturation_of_non_positive_pixels_is_their_value():
    # After a negative brightness delta a pixel's maximum can be <= 0: S = 0, all channels = V.
    pixel = np.array([[[-5.0, -20.0, -10.0]]], np.float32)
    np.testing.assert_allclose(inception.adjust_saturation(pixel, 1.5), [[[-5.0] * 3]])


def test_contrast_scales_about_each_channel_mean():
    image = _image(2)
    out = inception.adjust_contrast(image, 0.5)
    mean = image.mean(axis=(0, 1))
    np.testing.assert_allclose(out, (image - mean) * 0.5 + mean, atol=1e-3)


@pytest.mark.parametrize("fast_mode", [True, False])
def test_distort_color_orderings_and_range(monkeypatch, fast_mode):
    seen = []
    real = inception.apply_colour_ops
    monkeypatch.setattr(inception, "apply_colour_ops",
                        lambda image, ops: seen.append(tuple(n for n, _ in ops)) or real(image, ops))
    for seed in range(60):
        out = inception.distort_color(_image(seed), np.random.default_rng(seed), fast_mode=fast_mode)
        assert out.min() >= 0 and out.max() <= 255
    expected = {inception.FAST_ORDERING} if fast_mode else set(inception.ORDERINGS)
    assert set(seen) == expected
