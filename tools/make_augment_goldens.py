"""Write tests/data/goldens/augment_*.npz from TF-Vision's `official.vision.ops.augment`.

Run once with a Python that has tensorflow-cpu and tf-models-official (a scratch venv; the test
suite itself never imports TensorFlow):

    /path/to/tfvenv/bin/python tools/make_augment_goldens.py

Inputs: a 48x64 area-resize of scikit-image's chelsea() and a 29x37 crop of astronaut() (odd
sizes exercise the centre arithmetic and the contrast mean's folding), both stored in the file.
Each op runs with fixed arguments; level-to-argument values are recorded at several magnitudes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import tensorflow as tf  # noqa: E402
from official.vision.ops import augment  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "goldens"
REPLACE = [128] * 3

# (key, TF call) pairs; each call takes the uint8 input tensor.
OP_CASES = {
    "autocontrast": lambda x: augment.autocontrast(x),
    "equalize": lambda x: augment.equalize(x),
    "invert": lambda x: augment.invert(x),
    **{
        f"posterize_{b}": (lambda b: lambda x: augment.posterize(x, b))(b)
        for b in (0, 2, 4, 6, 8, 9)
    },
    **{
        f"solarize_{t}": (lambda t: lambda x: augment.solarize(x, t))(t)
        for t in (0, 51, 128, 204, 256, 384)
    },
    **{
        f"solarize_add_{a}": (lambda a: lambda x: augment.solarize_add(x, a))(a)
        for a in (33, 110, 165)
    },
    **{
        f"{op}_{f}": (lambda op, f: lambda x: getattr(augment, op)(x, f))(op, f)
        for op in ("color", "contrast", "brightness", "sharpness")
        for f in (0.1, 0.46, 1.0, 1.72, 2.8)
    },
    **{
        f"rotate_{d}": (lambda d: lambda x: augment.wrapped_rotate(x, d, REPLACE))(d)
        for d in (-30.0, 12.5, 45.0)
    },
    **{
        f"shear_x_{s}": (lambda s: lambda x: augment.shear_x(x, s, REPLACE))(s)
        for s in (-0.3, 0.15, 0.45)
    },
    **{
        f"shear_y_{s}": (lambda s: lambda x: augment.shear_y(x, s, REPLACE))(s)
        for s in (-0.3, 0.15, 0.45)
    },
    **{
        f"translate_x_{p}": (lambda p: lambda x: augment.translate_x(x, p, REPLACE))(p)
        for p in (-25.0, 7.0, 100.0, 150.0)
    },
    **{
        f"translate_y_{p}": (lambda p: lambda x: augment.translate_y(x, p, REPLACE))(p)
        for p in (-25.0, 7.0, 100.0, 150.0)
    },
    # Cutout's random centre fixed: TF's own rectangle fill at (cy, cx) with pad and grey 128.
    **{
        f"cutout_{cy}_{cx}_{pad}": (
            lambda cy, cx, pad: lambda x: augment._fill_rectangle(x, cx, cy, pad, pad, REPLACE)
        )(cy, cx, pad)
        for cy, cx, pad in ((10, 20, 8), (0, 63, 12), (47, 5, 30), (20, 30, 0))
    },
}

# Ops rerun on the odd-sized input.
ODD_CASES = [k for k in OP_CASES if k.split("_")[0] in ("rotate", "shear", "contrast", "color",
                                                       "sharpness", "translate", "autocontrast",
                                                       "equalize")]

LEVELS = (0, 1, 3, 5, 7, 9, 10, 15)
CONSTS = ((40.0, 100.0), (100.0, 250.0), (20.0, 10.0))  # (cutout_const, translate_const)


def inputs() -> dict[str, np.ndarray]:
    chelsea = cv2.resize(skimage.data.chelsea(), (64, 48), interpolation=cv2.INTER_AREA)
    astronaut = skimage.data.astronaut()[40:98:2, 180:254:2]  # 29 x 37
    # A low-diversity image: autocontrast's flat-channel branch and equalize's step == 0 branch.
    flat = (chelsea // 64) * 64
    flat[..., 2] = 77
    flat[:3, :3, 1] = 200
    return {"chelsea": chelsea, "astronaut": np.ascontiguousarray(astronaut), "flat": flat}


def level_args() -> dict[str, list]:
    """abs of every argument TF-Vision derives from each level (the sign is random there)."""
    table = {}
    for cutout_const, translate_const in CONSTS:
        mapping = augment.level_to_arg(cutout_const, translate_const)
        for name in augment.RandAugment().available_ops:
            for level in LEVELS:
                args = mapping[name](float(level))
                table[f"{name}|{level}|{cutout_const}|{translate_const}"] = [
                    abs(float(tf.convert_to_tensor(a).numpy())) for a in args
                ]
    return table


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images = inputs()
    arrays = {f"input_{k}": v for k, v in images.items()}
    for key, call in OP_CASES.items():
        arrays[f"chelsea/{key}"] = call(tf.constant(images["chelsea"])).numpy()
        if key in ODD_CASES:
            arrays[f"astronaut/{key}"] = call(tf.constant(images["astronaut"])).numpy()
    for key in ("autocontrast", "equalize"):
        arrays[f"flat/{key}"] = OP_CASES[key](tf.constant(images["flat"])).numpy()
    meta = {
        "tensorflow": tf.__version__,
        "level_args": level_args(),
        "policy_v0": augment.AutoAugment.policy_v0(),
        "policy_simple": augment.AutoAugment.policy_simple(),
        "randaugment_ops": augment.RandAugment().available_ops,
    }
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(OUT / "augment_ops.npz", **arrays)
    print(f"wrote {OUT / 'augment_ops.npz'}: {len(arrays)} arrays, "
          f"{(OUT / 'augment_ops.npz').stat().st_size} bytes")


if __name__ == "__main__":
    main()
