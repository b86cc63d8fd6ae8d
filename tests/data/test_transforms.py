"""Transforms: random-resized-crop geometry and fallback, the centre-crop formula, outputs."""

import cv2
import numpy as np
import pytest
from _data_fixtures import encode, smooth_image

from flaxnets.data import transforms
from flaxnets.data.decode import decode_crop
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
    areas = []
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


def test_tf_vision_fallback_is_center_crop_image_v2():
    strip = smooth_image(20, 400, seed=1)
    out = train_transform(encode(strip, "PNG"), np.random.default_rng(0), image_size_px=16,
                          crop="tf_vision", flip=False)
    # side = 0.875 * 20 = 17.5: a 17-pixel square at offset int((20 - 17.5) / 2), int(382.5 / 2).
    assert center_crop_window(20, 400, 0.875, "tf_vision") == (1, 191, 17, 17)
    expected = cv2.resize(strip[1:18, 191:208], (16, 16), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected)


def test_greyscale_jpeg_keeps_the_whole_image_window():
    strip = smooth_image(20, 400, seed=1)
    data = encode(strip, "JPEG", mode="L")
    for crop in ("tf_vision", "tf_tpu"):
        out = train_transform(data, np.random.default_rng(0), image_size_px=16, crop=crop, flip=False)
        whole = resize(decode_crop(data, (0, 0, 20, 400), (16, 16)), 16,
                       "bilinear" if crop == "tf_vision" else "bicubic",
                       half_pixel_centers=crop == "tf_vision")
        np.testing.assert_array_equal(out, whole)


def test_centre_crop_arithmetic_per_reference():
    assert center_crop_window(375, 500, 0.875, "tf_tpu") == (24, 86, 328, 328)
    assert center_crop_window(375, 500, 0.875, "tf_vision") == (23, 85, 328, 328)
    # tf.image.central_crop keeps the fraction of each side (float64), not a square.
    assert center_crop_window(375, 500, 0.875, "tf_slim") == (23, 31, 329, 438)
    assert center_crop_window(375, 500, 1.0, "tf_slim") == (0, 0, 375, 500)
    with pytest.raises(ValueError, match="arithmetic"):
        center_crop_window(10, 10, 0.5, "pillow")


@pytest.mark.parametrize("crop,interpolation,expected", [
    ("tf_vision", None, ("bilinear", True)), ("tf_tpu", None, ("bicubic", False)),
    ("tf_vision", "area", ("area", True)), ("tf_tpu", "bilinear", ("bilinear", False)),
    ("inception", None, ("bilinear", False)), ("inception", "nearest", ("nearest", False)),
])
def test_training_resize_is_the_flavours_unless_set(monkeypatch, crop, interpolation, expected):
    calls = []
    real = transforms.resize
    monkeypatch.setattr(transforms, "resize", lambda image, size, method, *, half_pixel_centers:
                        calls.append((method, half_pixel_centers)) or real(
                            image, size, method, half_pixel_centers=half_pixel_centers))
    data = encode(smooth_image(60, 80, seed=3), "JPEG")
    train_transform(data, np.random.default_rng(0), image_size_px=16, crop=crop,
                    interpolation=interpolation)
    assert calls == [expected]


def test_inception_without_fast_mode_draws_every_resize_method(monkeypatch):
    methods = set()
    real = transforms.resize
    monkeypatch.setattr(transforms, "resize", lambda image, size, method, **kw:
                        methods.add(method) or real(image, size, method, **kw))
    data = encode(smooth_image(60, 80, seed=3), "JPEG")
    for seed in range(40):
        out = train_transform(data, np.random.default_rng(seed), image_size_px=16, crop="inception",
                              inception_fast_mode=False)
        assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert methods == {"bilinear", "nearest", "bicubic", "area"}


def test_dct_scaled_decode_is_an_opt_in(monkeypatch):
    image = smooth_image(480, 640, seed=6)
    image[::2] = 255 - image[::2]  # fine detail, which a DCT-domain downscale filters out
    data = encode(image, "JPEG")
    box = (40, 80, 400, 400)
    monkeypatch.setattr(transforms, "sample_distorted_bounding_box", lambda *a, **k: (box, True))
    default = train_transform(data, np.random.default_rng(0), image_size_px=32, flip=False)
    scaled = train_transform(data, np.random.default_rng(0), image_size_px=32, flip=False,
                             dct_scaled_decode=True)
    np.testing.assert_array_equal(default, resize(decode_crop(data, box, (32, 32)), 32, "bilinear"))
    assert np.abs(default.astype(int) - scaled).mean() > 5


def test_resize_conventions():
    ramp = np.tile(np.arange(8, dtype=np.float32)[None, :, None] * 10, (8, 1, 3))
    # TF1 (no half-pixel offset): output x samples input x * 2; TF2: x * 2 + 0.5.
    np.testing.assert_allclose(resize(ramp, 4, "bilinear", half_pixel_centers=False)[0, :, 0],
                               [0, 20, 40, 60], atol=0.05)
    np.testing.assert_allclose(resize(ramp, 4, "bilinear")[0, :, 0], [5, 25, 45, 65], atol=0.05)
    np.testing.assert_array_equal(resize(ramp, 4, "nearest", half_pixel_centers=False)[0, :, 0],
                                  [0, 20, 40, 60])
    np.testing.assert_array_equal(resize(ramp, 4, "nearest")[0, :, 0], [10, 30, 50, 70])
    # Keys bicubic (a = -0.5) reproduces a linear ramp exactly away from the borders.
    np.testing.assert_allclose(resize(ramp, 4, "bicubic")[0, 1:3, 0], [25, 45], atol=1e-4)
    flat = np.full((9, 7, 3), 77, np.uint8)
    for method in ("bilinear", "bicubic", "area", "nearest"):
        for half in (True, False):
            np.testing.assert_array_equal(resize(flat, 5, method, half_pixel_centers=half), 77)
