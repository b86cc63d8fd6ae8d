"""`flaxnets predict`: top-5 ImageNet classes for image files with pretrained weights."""

from __future__ import annotations

import json

from flaxnets.errors import FlaxnetsError, UsageError

NAME = "predict"
HELP = "Classify images with a model and pretrained weights; print the top-5 classes."


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", required=True, help="model name, e.g. efficientnet_lite0")
    parser.add_argument("--weights", required=True,
                        help="weights file: .pth/.bin/.safetensors (timm, EfficientNet-PyTorch) or .weights.h5/.keras")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {path, top5}")
    parser.add_argument("--top-k", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--resolution", type=int, help="input size (default: the model's)")
    parser.add_argument("--crop-fraction", type=float, help="eval centre-crop fraction (default: the model's)")
    parser.add_argument("--mean", type=float, nargs=3, help="per-channel mean, 0-255 scale (default: the weights' or model's)")
    parser.add_argument("--std", type=float, nargs=3, help="per-channel std, 0-255 scale")


def center_crop(image, resolution: int, crop_fraction: float, interpolation: str):
    """Eval preprocessing: crop the centred square of side crop_fraction x the shorter side,
    resize it to resolution x resolution; returns a uint8 RGB array [H, W, 3]."""
    import numpy as np
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}.get(interpolation)
    if resample is None:
        raise FlaxnetsError(f"unknown interpolation {interpolation!r}; expected bicubic, bilinear or nearest")
    image = image.convert("RGB")
    width, height = image.size
    side = crop_fraction * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = tuple(round(v) for v in (left, top, left + side, top + side))
    return np.asarray(image.resize((resolution, resolution), resample, box=box), dtype=np.uint8)


def classify(model, images, *, mean, std, top_k: int = 5):
    """Top-k (class_id, probability) per image for a uint8 NHWC batch, model in eval mode;
    also returns the number of classes."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = (jnp.asarray(images, jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    from flax import nnx

    model.eval()
    graphdef, state = nnx.split(model)
    probs = np.asarray(jax.jit(lambda s, x: jax.nn.softmax(nnx.merge(graphdef, s)(x), axis=-1))(state, x))
    top = np.argsort(-probs, axis=-1)[:, :top_k]
    return [[(int(c), float(p[c])) for c in row] for row, p in zip(top, probs)], probs.shape[-1]


def load_pretrained(model_name: str, weights: str):
    """(model, mean, std) with `weights` loaded, the model built as the file's origin needs
    (TF SAME padding and eps 1e-3 for TF-trained weights); mean/std None = the model's default."""
    from flaxnets.weights import create_pretrained

    model, info = create_pretrained(model_name, weights)
    return model, info.mean, info.std


def run(args) -> int:

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from flaxnets.weights import imagenet_class_names

    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: expected a positive integer")
    if args.crop_fraction is not None and not 0 < args.crop_fraction <= 1:
        raise UsageError(f"--crop-fraction {args.crop_fraction}: expected a value in (0, 1]")
    from flaxnets.models import get_spec

    spec = get_spec(args.model)
    model, mean, std = load_pretrained(args.model, args.weights)
    resolution = args.resolution or spec.resolution
    crop_fraction = args.crop_fraction or spec.crop_fraction
    mean = args.mean or mean or spec.mean
    std = args.std or std or spec.std
    batch = []
    for path in args.images:
        try:
            with Image.open(path) as image:
                batch.append(center_crop(image, resolution, crop_fraction, spec.interpolation))
        except (FileNotFoundError, UnidentifiedImageError, IsADirectoryError) as e:
            raise FlaxnetsError(f"cannot read image {path}: {e.__class__.__name__}") from e
    results, num_classes = classify(model, np.stack(batch), mean=mean, std=std, top_k=args.top_k)
    names = imagenet_class_names() if num_classes == 1000 else [f"class {c}" for c in range(num_classes)]
    if args.json:
        out = [
            {"path": path, "top5": [{"class_id": c, "name": names[c], "prob": p} for c, p in top]}
            for path, top in zip(args.images, results)
        ]
        print(json.dumps(out, indent=2))
        return 0
    for path, top in zip(args.images, results):
        print(path)
        for c, p in top:
            print(f"  {p:7.2%}  {c:4d}  {names[c]}")
    return 0

