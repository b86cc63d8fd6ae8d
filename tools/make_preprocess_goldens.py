"""Write tests/data/goldens/preprocess_*.npz from the reference input pipelines themselves.

Run once with a scratch venv holding tensorflow-cpu and tf-models-official (the test suite never
imports TensorFlow), with TF-TPU's EfficientNet `preprocessing.py` from a tensorflow/tpu
checkout at commit 80c0773 (the last one with CROP_PADDING = 32, the published runs' value).
Made with tensorflow-cpu 2.21.0, tf-models-official 2.20.0, scikit-image and Pillow as recorded
in the files' `versions`, from the repository root:

    git -C tpu show 80c0773:models/official/efficientnet/preprocessing.py > /tmp/tpu_preprocessing.py
    TF_USE_LEGACY_KERAS=1 /path/to/tfvenv/bin/python tools/make_preprocess_goldens.py \\
        --tpu-preprocessing /tmp/tpu_preprocessing.py

`preprocess_parity.npz` (tests/data/test_reference_parity.py). Photos: scikit-image sample
photos encoded here as JPEGs (the bytes are stored): chelsea 300x451 4:2:0, coffee 400x600
4:4:4, rocket 427x640 progressive, camera 512x512 greyscale, astronaut cut to 512x341 4:2:2.
Each gets three fixed crop boxes ("box", an upscaled "small" one and "whole", the whole image,
which triggers the references' centre-crop fallback); two also get the "box" crop resized with
each non-default method (TF-Vision's `tf_resize_method`, TF-TPU's `resize_method`). The crop
sampler is replaced by one returning the fixed box and random flips are off; everything else is
the reference code:

* TF-Vision: `official.vision.dataloaders.classification_input.Parser._parse_train_image` and
  `_parse_eval_image` (region decode, fallback, bilinear `tf.image.resize`, normalisation with
  MEAN_RGB / STDDEV_RGB); outputs are normalised.
* TF-TPU: `preprocessing.preprocess_for_train` / `preprocess_for_eval` imported from the file
  given (region decode, fallback, TF1 `resize_bicubic`); outputs on the 0-255 scale. Its
  CROP_PADDING stays the file's 32: the training fallback crops size / (size + 32) (0.5 at 32
  px), and the evaluation goldens are made at the sizes of the B1, B2 and B3 recipes (240, 260,
  300 px: crops 0.882, 0.890, 0.904, where 224 px would give 0.875 exactly), stored on every
  EVAL_STRIDE-th row and column to keep the file small.
* TF-slim Inception (`research/slim/preprocessing/inception_preprocessing.py` in
  tensorflow/models is not an installable module and uses the TF1 API): its steps are written
  out here as the same TF calls, with the file's arguments: decode + `convert_image_dtype` +
  `tf.slice` to the box, `tf.compat.v1.image.resize_images` with each of the 4 methods,
  `distort_color`'s op orderings with the random ops' factors fixed, and `preprocess_for_eval`
  (`central_crop` 0.875 + `resize_bilinear`); outputs scaled to [-1, 1] as the file does.

`preprocess_crop_distribution.npz` (tests/data/test_crop_distribution.py): 20,000 windows of
`tf.image.sample_distorted_bounding_box` (the whole image as the only box) per setting (TF-Vision,
TF-TPU, Inception) and image shape, stored sorted, quantised and difference-coded (crop area
fraction in 1/65535, aspect ratio w/h in 1/4096, so up to 16), with the number of whole-image
windows.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import tensorflow as tf  # noqa: E402
from official.vision.dataloaders import classification_input  # noqa: E402
from PIL import Image  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "goldens"
# The real sampler, kept before `parity` replaces it with a fixed box.
SAMPLE_DISTORTED_BOUNDING_BOX = tf.image.sample_distorted_bounding_box
TRAIN_SIZE, SMALL_SIZE, EVAL_SIZE = 32, 48, 40
# TF-TPU evaluation: recipe -> its image size (EfficientNet B1-B3), and the stored pixel grid.
TPU_EVAL_SIZES = {"efficientnet_b1_tpu": 240, "efficientnet_b2_tpu": 260, "efficientnet_b3_tpu": 300}
EVAL_STRIDE = 6
SAMPLES = 20_000
# Photos on which the non-default resize methods are recorded too.
METHOD_PHOTOS = ("chelsea_420", "camera_grey")
# The last two are strips on which the sampler often fails and returns the whole image.
SHAPES = ((375, 500), (500, 333), (100, 400), (33, 400), (28, 400))
# name: (min_object_covered, area_range, aspect_ratio_range, max_attempts)
SAMPLER_SETTINGS = {
    "tf_vision": (0.08, (0.08, 1.0), (3 / 4, 4 / 3), 10),  # random_crop_image_v2
    "tf_tpu": (0.1, (0.08, 1.0), (3 / 4, 4 / 3), 10),  # _decode_and_random_crop
    "inception": (0.1, (0.05, 1.0), (0.75, 1.33), 100),  # distorted_bounding_box_crop
}
# TF1 tf.image.ResizeMethod order (inception_preprocessing draws an index into it).
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")
# distort_color orderings without fast mode; fast mode is the first two ops of ordering 0.
ORDERINGS = (
    ("brightness", "saturation", "hue", "contrast"),
    ("saturation", "brightness", "contrast", "hue"),
    ("contrast", "hue", "brightness", "saturation"),
    ("hue", "saturation", "contrast", "brightness"),
)
# Fixed factors replacing the random draws (brightness delta on the [0, 1] scale).
COLOUR_FACTORS = (
    {"brightness": 0.1, "saturation": 1.3, "hue": 0.15, "contrast": 0.7},
    {"brightness": -0.12, "saturation": 0.6, "hue": -0.18, "contrast": 1.4},
)


def photos() -> dict[str, bytes]:
    """The JPEG files: name -> bytes."""
    def jpeg(array, mode="RGB", **options):
        buffer = io.BytesIO()
        Image.fromarray(array).convert(mode).save(buffer, "JPEG", quality=75, **options)
        return buffer.getvalue()

    return {
        "chelsea_420": jpeg(skimage.data.chelsea(), subsampling=2),
        "coffee_444": jpeg(skimage.data.coffee(), subsampling=0),
        "rocket_progressive": jpeg(skimage.data.rocket(), progressive=True),
        "camera_grey": jpeg(skimage.data.camera(), mode="L"),
        "astronaut_422": jpeg(np.ascontiguousarray(skimage.data.astronaut()[:, 100:441]),
                              subsampling=1),
    }


def boxes(height: int, width: int) -> dict[str, tuple[tuple[int, int, int, int], int]]:
    """Fixed crop boxes (y, x, h, w) with the output size each is resized to."""
    return {
        "box": ((height // 10, width // 5, height * 3 // 5, width // 2), TRAIN_SIZE),
        "small": ((height // 3, width // 3, 41, 37), SMALL_SIZE),
        "whole": ((0, 0, height, width), TRAIN_SIZE),
    }


class FixedSampler:
    """Stands in for tf.image.sample_distorted_bounding_box, returning `self.box`."""

    box = (0, 0, 1, 1)

    def __call__(self, image_size, bounding_boxes, **kwargs):
        y, x, h, w = self.box
        begin = tf.constant([y, x, 0], tf.int32)
        size = tf.constant([h, w, -1], tf.int32)
        return begin, size, tf.zeros([1, 1, 4])


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slim_colour(image, ordering, fast_mode, factors):
    """inception_preprocessing.distort_color with the random ops' factors fixed."""
    ops = ORDERINGS[0][:2] if fast_mode else ORDERINGS[ordering]
    calls = {
        "brightness": lambda x: tf.image.adjust_brightness(x, factors["brightness"]),
        "saturation": lambda x: tf.image.adjust_saturation(x, factors["saturation"]),
        "hue": lambda x: tf.image.adjust_hue(x, factors["hue"]),
        "contrast": lambda x: tf.image.adjust_contrast(x, factors["contrast"]),
    }
    for op in ops:
        image = calls[op](image)
    return tf.clip_by_value(image, 0.0, 1.0)


def to_minus_one_one(image):
    """inception_preprocessing's final scaling."""
    return tf.multiply(tf.subtract(image, 0.5), 2.0)


def parity(tpu_path: str) -> dict[str, np.ndarray]:
    tpu = load_module(tpu_path, "tpu_preprocessing")
    assert tpu.CROP_PADDING == 32, f"CROP_PADDING {tpu.CROP_PADDING}: not preprocessing.py at 80c0773"
    tpu._flip = lambda image: image  # random flip off
    sampler = FixedSampler()
    tf.image.sample_distorted_bounding_box = sampler
    tf.compat.v1.image.sample_distorted_bounding_box = sampler
    out: dict[str, np.ndarray] = {}
    index = []
    vision_train = classification_input.Parser(
        output_size=[TRAIN_SIZE, TRAIN_SIZE], num_classes=1000, aug_rand_hflip=False)
    vision_small = classification_input.Parser(
        output_size=[SMALL_SIZE, SMALL_SIZE], num_classes=1000, aug_rand_hflip=False)
    vision_eval = classification_input.Parser(output_size=[EVAL_SIZE, EVAL_SIZE], num_classes=1000)
    for name, data in photos().items():
        out[f"jpeg/{name}"] = np.frombuffer(data, np.uint8)
        height, width = (int(v) for v in tf.image.extract_jpeg_shape(data)[:2])
        encoded = {"image/encoded": tf.constant(data)}
        for box_name, (box, size) in boxes(height, width).items():
            sampler.box = box
            parser = vision_small if size == SMALL_SIZE else vision_train
            key = f"{name}/{box_name}"
            out[f"tf_vision_train/{key}"] = parser._parse_train_image(encoded).numpy()
            out[f"tf_tpu_train/{key}"] = tpu.preprocess_for_train(
                tf.constant(data), use_bfloat16=False, image_size=size).numpy()
            index.append({"photo": name, "box_name": box_name, "box": box, "size": size})
        if name in METHOD_PHOTOS:
            # The other resize methods (data.interpolation), on the "box" crop.
            sampler.box, size = boxes(height, width)["box"]
            for method in RESIZE_METHODS:
                if method != "bilinear":
                    parser = classification_input.Parser(
                        output_size=[size, size], num_classes=1000, aug_rand_hflip=False,
                        tf_resize_method=method)
                    out[f"tf_vision_method/{name}/{method}"] = parser._parse_train_image(encoded).numpy()
                if method != "bicubic":
                    out[f"tf_tpu_method/{name}/{method}"] = tpu.preprocess_for_train(
                        tf.constant(data), use_bfloat16=False, image_size=size,
                        resize_method=method).numpy()
        out[f"tf_vision_eval/{name}"] = vision_eval._parse_eval_image(encoded).numpy()
        for recipe, size in TPU_EVAL_SIZES.items():
            out[f"tf_tpu_eval/{recipe}/{name}"] = tpu.preprocess_for_eval(
                tf.constant(data), use_bfloat16=False, image_size=size
            ).numpy()[::EVAL_STRIDE, ::EVAL_STRIDE]

    # TF-slim: the image is decoded whole (slim's TFExampleDecoder) and converted to [0, 1].
    data = photos()
    for name, box_name in (("chelsea_420", "box"), ("astronaut_422", "small")):
        image = tf.image.convert_image_dtype(tf.io.decode_jpeg(data[name], channels=3), tf.float32)
        box, size = boxes(*image.shape[:2])[box_name]
        crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], -1])
        for method_index, method in enumerate(RESIZE_METHODS):
            resized = tf.compat.v1.image.resize_images(crop, [size, size], method_index)
            out[f"inception_resize/{name}/{box_name}/{method}"] = to_minus_one_one(resized).numpy()
        out[f"inception_eval/{name}"] = to_minus_one_one(tf.squeeze(tf.compat.v1.image.resize_bilinear(
            tf.expand_dims(tf.image.central_crop(image, 0.875), 0), [EVAL_SIZE, EVAL_SIZE],
            align_corners=False), [0])).numpy()
    base = (out["inception_resize/chelsea_420/box/bilinear"] + 1) / 2
    for ordering in range(4):
        for fast_mode in (False, True) if ordering == 0 else (False,):
            factors = COLOUR_FACTORS[ordering % 2]
            coloured = slim_colour(tf.constant(base), ordering, fast_mode, factors)
            out[f"inception_colour/{ordering}/{'fast' if fast_mode else 'full'}"] = (
                to_minus_one_one(coloured).numpy())
    # float16 keeps 0.07 grey levels, except where TF-Vision normalised a 0-1 image (nearest
    # keeps uint8, which normalize_image divides by 255): there float32 is needed.
    def stored(key, value):
        zero_to_one = key.startswith("tf_vision_method/") and key.endswith("/nearest")
        return value.astype(np.float16) if value.dtype == np.float32 and not zero_to_one else value

    out = {key: stored(key, value) for key, value in out.items()}
    out["meta"] = np.frombuffer(json.dumps({
        "cases": index, "colour_factors": COLOUR_FACTORS, "orderings": ORDERINGS,
        "resize_methods": RESIZE_METHODS, "sizes": [TRAIN_SIZE, SMALL_SIZE, EVAL_SIZE],
        "tpu_crop_padding": tpu.CROP_PADDING, "tpu_eval_sizes": TPU_EVAL_SIZES,
        "eval_stride": EVAL_STRIDE,
    }).encode(), np.uint8)
    return out


def distribution() -> dict[str, np.ndarray]:
    tf.random.set_seed(0)
    out: dict[str, np.ndarray] = {}
    whole = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    for setting, (covered, area, aspect, attempts) in SAMPLER_SETTINGS.items():
        for height, width in SHAPES:
            shape = tf.constant([height, width, 3], tf.int32)

            @tf.function
            def sample(shape=shape, covered=covered, area=area, aspect=aspect, attempts=attempts):
                def one(_):
                    _, size, _ = SAMPLE_DISTORTED_BOUNDING_BOX(
                        shape, whole, min_object_covered=covered, area_range=area,
                        aspect_ratio_range=aspect, max_attempts=attempts,
                        use_image_if_no_bounding_boxes=True)
                    return size[:2]
                return tf.map_fn(one, tf.range(SAMPLES), fn_output_signature=tf.int32)

            sizes = sample().numpy().astype(np.float64)
            key = f"{setting}/{height}x{width}"
            area_fraction = sizes[:, 0] * sizes[:, 1] / (height * width)
            aspect_ratio = sizes[:, 1] / sizes[:, 0]
            # Sorted, then stored as differences (np.cumsum restores them): compresses well.
            for name, values in (("area", area_fraction * 65535), ("aspect", aspect_ratio * 4096)):
                quantised = np.sort(np.round(values)).astype(np.int64)
                out[f"{key}/{name}"] = np.diff(quantised, prepend=0).astype(np.uint16)
            out[f"{key}/whole"] = np.int64(np.sum((sizes[:, 0] == height) & (sizes[:, 1] == width)))
    out["meta"] = np.frombuffer(json.dumps({
        "samples": SAMPLES, "shapes": SHAPES, "settings": SAMPLER_SETTINGS}).encode(), np.uint8)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tpu-preprocessing", required=True,
                        help="models/official/efficientnet/preprocessing.py of tensorflow/tpu")
    args = parser.parse_args()
    import official

    versions = {
        "command": "tools/make_preprocess_goldens.py --tpu-preprocessing PATH (tensorflow/tpu 80c0773)",
        "tensorflow": tf.__version__,
        "tf_models_official": getattr(official, "__version__", None) or _version("tf-models-official"),
        "scikit_image": skimage.__version__,
        "pillow": Image.__version__,
    }
    stamp = np.frombuffer(json.dumps(versions).encode(), np.uint8)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "preprocess_parity.npz", versions=stamp, **parity(args.tpu_preprocessing))
    np.savez_compressed(OUT / "preprocess_crop_distribution.npz", versions=stamp, **distribution())
    for name in ("preprocess_parity.npz", "preprocess_crop_distribution.npz"):
        print(f"{OUT / name}: {(OUT / name).stat().st_size} bytes")
    return 0


def _version(distribution_name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution_name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
