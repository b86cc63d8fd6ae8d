"""Our transforms against the reference pipelines' own outputs (goldens made by
tools/make_preprocess_goldens.py with TF-Vision, TF-TPU EfficientNet preprocessing.py and the
TF-slim Inception steps; the sampler replaced by a fixed box, flips off). TF-TPU's centre crops
are preprocessing.py's own, size / (size + 32): the training fallback at 32 px, the evaluation
at the B1-B3 recipes' 240, 260 and 300 px, where it differs from 0.875.

Tolerance: mean absolute difference <= 0.5 grey levels (0-255 scale) per image. The references
keep float32 pixels; ours are rounded to uint8 once (up to 0.5, about 0.25 on average), and
OpenCV interpolates uint8 with fixed-point weights and 1/32-pixel coordinates (a few hundredths
of a level on average); the goldens are stored as float16 (under 0.07 levels). Anything larger,
a half-pixel shift, a different kernel, window or decode, moves the mean by a grey level or more
on these photos at these scales (the test's own negative checks show it). Where a reference's
float output leaves [0, 255] (bicubic overshoot), our uint8 clips: the comparison clips the
reference too, and the unclipped difference is held to 0.75.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from flaxnets.data import inception, transforms
from flaxnets.data.decode import decode_crop
from flaxnets.recipes import load_recipe
from flaxnets.train.from_config import resolve_preprocessing

GOLDENS = np.load(Path(__file__).parent / "goldens" / "preprocess_parity.npz")
META = json.loads(bytes(GOLDENS["meta"]))
CASES = META["cases"]
TRAIN_SIZE, SMALL_SIZE, EVAL_SIZE = META["sizes"]
EVAL_STRIDE = META["eval_stride"]
PHOTOS = sorted({case["photo"] for case in CASES})
# TF-Vision's MEAN_RGB / STDDEV_RGB (`official/vision/ops/preprocess_ops.py`).
MEAN_RGB = np.array([0.485, 0.456, 0.406]) * 255
STDDEV_RGB = np.array([0.229, 0.224, 0.225]) * 255
TOLERANCE = 0.5


def _jpeg(photo):
    return GOLDENS[f"jpeg/{photo}"].tobytes()


def _grey_levels(ours_uint8, reference_0_255, clip=True):
    """Mean absolute difference in grey levels."""
    reference = reference_0_255.astype(np.float64)
    if clip:
        reference = np.clip(reference, 0, 255)
    return float(np.abs(ours_uint8.astype(np.float64) - reference).mean())


def _train(monkeypatch, case, crop, **kw):
    """Our train transform with the sampler returning the case's box, flip off."""
    box = tuple(case["box"])
    monkeypatch.setattr(transforms, "sample_distorted_bounding_box", lambda *a, **k: (box, True))
    return transforms.train_transform(_jpeg(case["photo"]), np.random.default_rng(0),
                                      image_size_px=case["size"], crop=crop, flip=False, **kw)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['photo']}-{c['box_name']}")
def test_tf_vision_train_matches_parse_train_image(monkeypatch, case):
    ours = _train(monkeypatch, case, "tf_vision")
    golden = GOLDENS[f"tf_vision_train/{case['photo']}/{case['box_name']}"].astype(np.float64)
    assert _grey_levels(ours, golden * STDDEV_RGB + MEAN_RGB) <= TOLERANCE


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['photo']}-{c['box_name']}")
def test_tf_tpu_train_matches_preprocess_for_train(monkeypatch, case):
    # The "whole" box falls back to our own centre crop, size / (size + 32) as TF-TPU's.
    ours = _train(monkeypatch, case, "tf_tpu")
    golden = GOLDENS[f"tf_tpu_train/{case['photo']}/{case['box_name']}"]
    assert _grey_levels(ours, golden) <= TOLERANCE
    assert _grey_levels(ours, golden, clip=False) <= 0.75


@pytest.mark.parametrize("photo", PHOTOS)
def test_eval_transforms_match_the_references(photo):
    vision = transforms.eval_transform(_jpeg(photo), image_size_px=EVAL_SIZE, crop_fraction=0.875,
                                       interpolation="bilinear", crop="tf_vision")
    golden = GOLDENS[f"tf_vision_eval/{photo}"].astype(np.float64) * STDDEV_RGB + MEAN_RGB
    assert _grey_levels(vision, golden) <= TOLERANCE


@pytest.mark.parametrize("recipe", sorted(META["tpu_eval_sizes"]))
@pytest.mark.parametrize("photo", PHOTOS)
def test_tf_tpu_eval_of_each_recipe_matches_preprocess_for_eval(recipe, photo):
    """preprocess_for_eval with CROP_PADDING 32 at the B1-B3 sizes (crop 0.882-0.904), against
    our evaluation of the recipe (its config resolved as a run resolves it) and of the model's
    defaults (`flaxnets evaluate` of imported weights); compared on the golden's pixel grid."""
    config = load_recipe(recipe)
    size = META["tpu_eval_sizes"][recipe]
    golden = GOLDENS[f"tf_tpu_eval/{recipe}/{photo}"]
    defaults = dataclasses.replace(
        config, data=dataclasses.replace(config.data, eval_crop_fraction=None))
    for prep in resolve_preprocessing(config), resolve_preprocessing(defaults):
        assert prep["image_size"] == size and prep["crop"] == "tf_tpu"
        ours = transforms.eval_transform(_jpeg(photo), image_size_px=size,
                                         crop_fraction=prep["crop_fraction"],
                                         interpolation=prep["interpolation"], crop=prep["crop"])
        assert _grey_levels(ours[::EVAL_STRIDE, ::EVAL_STRIDE], golden) <= TOLERANCE
    # TF-Vision's 0.875 is far from TF-TPU's output at these sizes.
    wrong = transforms.eval_transform(_jpeg(photo), image_size_px=size, crop_fraction=0.875,
                                      interpolation="bicubic", crop="tf_tpu")
    assert _grey_levels(wrong[::EVAL_STRIDE, ::EVAL_STRIDE], golden) > 2 * TOLERANCE


def test_whole_image_box_falls_back_only_for_colour_jpegs(monkeypatch):
    # The references' fallback changes the output completely; greyscale files keep the window.
    for case in CASES:
        if case["box_name"] != "whole":
            continue
        ours = _train(monkeypatch, case, "tf_vision")
        plain = transforms.resize(decode_crop(_jpeg(case["photo"]), tuple(case["box"]), (1, 1)),
                                  case["size"], "bilinear")
        assert np.array_equal(ours, plain) == (case["photo"] == "camera_grey"), case["photo"]


def test_the_comparison_detects_a_wrong_convention(monkeypatch):
    # A half-pixel shift (TF2 vs TF1 bicubic) or the accurate DCT is far outside the tolerance.
    case = next(c for c in CASES if c["photo"] == "coffee_444" and c["box_name"] == "box")
    golden = GOLDENS[f"tf_tpu_train/{case['photo']}/{case['box_name']}"]
    crop = decode_crop(_jpeg(case["photo"]), tuple(case["box"]), (1, 1))
    shifted = transforms.resize(crop, case["size"], "bilinear", half_pixel_centers=True)
    assert _grey_levels(shifted, golden) > 2 * TOLERANCE
    vision = GOLDENS[f"tf_vision_eval/{case['photo']}"].astype(np.float64) * STDDEV_RGB + MEAN_RGB
    data = _jpeg(case["photo"])
    height, width = 400, 600
    window = transforms.center_crop_window(height, width, 0.875, "tf_vision")
    accurate = transforms.resize(decode_crop(data, window, (1, 1), fast_dct=False), EVAL_SIZE,
                                 "bilinear")
    faithful = transforms.eval_transform(data, image_size_px=EVAL_SIZE, crop_fraction=0.875,
                                         interpolation="bilinear", crop="tf_vision")
    assert _grey_levels(accurate, vision) > _grey_levels(faithful, vision) + 0.2


def _slim_crop(photo, box_name):
    case = next(c for c in CASES if c["photo"] == photo and c["box_name"] == box_name)
    crop = decode_crop(_jpeg(photo), tuple(case["box"]), (1, 1)).astype(np.float32)
    return crop, case["size"]


@pytest.mark.parametrize("method", inception.RESIZE_METHODS)
@pytest.mark.parametrize("photo,box_name", [("chelsea_420", "box"), ("astronaut_422", "small")])
def test_inception_crop_and_resize_match_resize_images(photo, box_name, method):
    crop, size = _slim_crop(photo, box_name)
    ours = np.rint(transforms.resize(crop, size, method, half_pixel_centers=False))
    golden = (GOLDENS[f"inception_resize/{photo}/{box_name}/{method}"].astype(np.float64) + 1) * 127.5
    assert _grey_levels(ours, golden) <= TOLERANCE


@pytest.mark.parametrize("photo", ["chelsea_420", "astronaut_422"])
def test_inception_eval_matches_preprocess_for_eval(photo):
    ours = transforms.eval_transform(_jpeg(photo), image_size_px=EVAL_SIZE, crop_fraction=0.875,
                                     interpolation="bilinear", crop="inception")
    golden = (GOLDENS[f"inception_eval/{photo}"].astype(np.float64) + 1) * 127.5
    assert _grey_levels(ours, golden) <= TOLERANCE


@pytest.mark.parametrize("key", [k for k in GOLDENS.files if k.startswith("inception_colour/")])
def test_inception_colour_ops_match_distort_color(key):
    _, ordering, mode = key.split("/")
    ordering = int(ordering)
    factors = META["colour_factors"][ordering % 2]
    names = inception.FAST_ORDERING if mode == "fast" else inception.ORDERINGS[ordering]
    # The input is the reference's own bilinear resize, so only the colour ops are compared.
    base = (GOLDENS["inception_resize/chelsea_420/box/bilinear"].astype(np.float32) + 1) * 127.5
    ops = [(name, factors[name] * (255 if name == "brightness" else 1)) for name in names]
    ours = np.rint(inception.apply_colour_ops(base, ops))
    golden = (GOLDENS[key].astype(np.float64) + 1) * 127.5
    assert _grey_levels(ours, golden) <= TOLERANCE
    assert list(names) == [n for n in META["orderings"][ordering][: len(names)]]


# Nearest-neighbour tf.image.resize keeps uint8, and both references then convert the image
# with `convert_image_dtype` (TF-Vision inside `normalize_image`), which divides integers by 255:
# with "nearest" they feed the network pixels on a 0-1 scale. We keep 0-255 (a reference defect
# no recipe relies on) and compare the pixels with that scaling undone.
_SCALE_UNDONE = {"nearest": 255}


def _method_cases(prefix):
    for key in GOLDENS.files:
        if key.startswith(prefix):
            _, photo, method = key.split("/")
            yield pytest.param(photo, method, id=f"{photo}-{method}")


@pytest.mark.parametrize("photo,method", _method_cases("tf_vision_method/"))
def test_tf_vision_train_with_each_resize_method(monkeypatch, photo, method):
    # tf.image.resize: half-pixel centres; bicubic is Keys' a = -0.5 kernel.
    case = next(c for c in CASES if c["photo"] == photo and c["box_name"] == "box")
    ours = _train(monkeypatch, case, "tf_vision", interpolation=method)
    golden = GOLDENS[f"tf_vision_method/{photo}/{method}"].astype(np.float64)
    reference = (golden * STDDEV_RGB + MEAN_RGB) * _SCALE_UNDONE.get(method, 1)
    assert _grey_levels(ours, reference) <= TOLERANCE


@pytest.mark.parametrize("photo,method", _method_cases("tf_tpu_method/"))
def test_tf_tpu_train_with_each_resize_method(monkeypatch, photo, method):
    # tf.compat.v1.image.resize: TF1 pixel mapping (no half-pixel offset).
    case = next(c for c in CASES if c["photo"] == photo and c["box_name"] == "box")
    ours = _train(monkeypatch, case, "tf_tpu", interpolation=method)
    golden = GOLDENS[f"tf_tpu_method/{photo}/{method}"].astype(np.float64)
    assert _grey_levels(ours, golden * _SCALE_UNDONE.get(method, 1)) <= TOLERANCE
