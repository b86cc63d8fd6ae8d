"""Transforms: random-resized-crop geometry and fallback, the centre-crop formula, outputs."""

import cv2
import numpy as np
import pytest
from _data_fixtures import encode, smooth_image

from flaxnets.data.transforms import (
    center_crop_window,
    eval_transform,
    resize,
    sample_distorted_bounding_box,
    train_transform,
)


@pytest.mark.parametrize("height,width", [(375, 500), (500, 333), (64, 64), (100, 400)])
@pytest.mark.parametrize("min_object_covered", [0.08, 0.1])
def test_random_crop_area_and_aspect_within_bounds(height, width, min_object_covered):
    rng = np.random.default_rng(0)
    areas, aspects = [], []
    for _ in range(2000):
        (y, x, h, w), sampled = sample_distorted_bounding_box(
            height, width, rng, min_object_covered=min_object_covered)
        assert 0 <= y and y + h <= height and 0 <= x and x + w <= width
        if sampled:
            areas.append(h * w / (height * width))
            # The width is rounded from height * aspect, so allow half a pixel of slack.
            assert 3 / 4 - 0.5 / h <= w / h <= 4 / 3 + 0.5 / h
    areas = np.asarray(areas)
    assert len(areas) > 1900
    assert areas.min() >= min_object_covered and areas.max() <= 1.0
    # The largest window of an allowed aspect ratio bounds the area from above.
    largest = max(min(height, width / a) * min(width, height * a)
                  for a in np.linspace(3 / 4, 4 / 3, 101)) / (height * width)
    assert areas.min() < min_object_covered + 0.03 and 0.8 * largest < areas.max() <= largest + 0.01


def test_random_crop_falls_back_to_whole_image():
    rng = np.random.default_rng(0)
    for _ in range(50):  # a 10 x 1000 strip has no 3/4..4/3 window of 8% of its area
        window, sampled = sample_distorted_bounding_box(10, 1000, rng)
        assert window == (0, 0, 10, 1000) and not sampled


def test_tf_tpu_fallback_uses_the_padded_centre_crop():
    strip = smooth_image(20, 400, seed=1)
    data = encode(strip, "PNG")
    out = train_transform(data, np.random.default_rng(0), image_size_px=16, crop="tf_tpu")
    y, x, h, w = center_crop_window(20, 400, 16 / 48)
    expected = resize(strip[y:y + h, x:x + w], 16, "bicubic", half_pixel_centers=False)
    assert (y, x, h, w) == (7, 197, 6, 6)
    assert np.array_equal(out, expected) or np.array_equal(out, expected[:, ::-1])


def test_center_crop_formula_matches_tf_tpu():
    # padded_center_crop_size = int(224 / (224 + 32) * min(h, w)); offset = (h - crop + 1) // 2
    assert center_crop_window(375, 500, 224 / 256) == (24, 86, 328, 328)
    assert center_crop_window(500, 333, 0.875) == (105, 21, 291, 291)
    assert center_crop_window(300, 300, 1.0) == (0, 0, 300, 300)


def test_eval_transform_is_centre_crop_then_resize():
    image = smooth_image(60, 80, seed=2)
    out = eval_transform(encode(image, "PNG"), image_size_px=24, crop_fraction=0.5,
                         interpolation="bilinear", crop="tf_vision")
    expected = cv2.resize(image[15:45, 25:55], (24, 24), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected)
    out = eval_transform(encode(image, "PNG"), image_size_px=24, crop_fraction=0.5,
                         interpolation="bicubic", crop="tf_tpu")
    expected = resize(image[15:45, 25:55], 24, "bicubic", half_pixel_centers=False)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("crop", ["tf_vision", "tf_tpu"])
def test_train_transform_is_deterministic_per_generator(crop):
    data = encode(smooth_image(90, 120, seed=4), "JPEG")
    outs = [train_transform(data, np.random.default_rng(7), image_size_px=32, crop=crop) for _ in range(2)]
    assert outs[0].shape == (32, 32, 3) and outs[0].dtype == np.uint8
    np.testing.assert_array_equal(outs[0], outs[1])
    others = [train_transform(data, np.random.default_rng(s), image_size_px=32, crop=crop) for s in range(5)]
    assert any(not np.array_equal(outs[0], o) for o in others)


def test_train_transform_flips_about_half_the_time():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white: a flip puts white on the right
    data = encode(image, "PNG")
    flips = 0
    for seed in range(200):
        out = train_transform(data, np.random.default_rng(seed), image_size_px=8, crop="tf_vision")
        flips += int(out[:, -1].mean() > out[:, 0].mean())
    assert 70 < flips < 130


def test_augment_callable_receives_uint8_and_generator():
    calls = []

    def augment(image, rng):
        calls.append((image.dtype, image.shape, isinstance(rng, np.random.Generator)))
        return 255 - image

    data = encode(smooth_image(30, 30), "PNG")
    out = train_transform(data, np.random.default_rng(0), image_size_px=8, augment=augment)
    plain = train_transform(data, np.random.default_rng(0), image_size_px=8)
    assert calls == [(np.uint8, (8, 8, 3), True)]
    np.testing.assert_array_equal(out, 255 - plain)
