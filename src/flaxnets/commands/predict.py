"""`flaxnets predict`: the most likely classes (--top-k, default 5) of image files, with
pretrained weights (--model and --weights) or a training run's saved weights (--workdir).

Paths are checked before any model is loaded; an image that cannot be decoded is reported once,
left out, and counted at the end, and the others are still classified."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from flaxnets.commands import _tflite
from flaxnets.errors import FlaxnetsError, UsageError

NAME = "predict"
HELP = "Classify images with pretrained weights or a run's saved weights; print the most likely classes."


def add_source_arguments(parser):
    """--model/--weights or --workdir/--checkpoint/--ema: where the network and its weights come from."""
    parser.add_argument("--model", metavar="NAME", help="zoo model name, e.g. efficientnet_lite0 (with --weights)")
    parser.add_argument("--weights", metavar="FILE",
                        help="weights file: .pth/.bin/.safetensors (timm, EfficientNet-PyTorch) or .weights.h5/.keras")
    parser.add_argument("--workdir", metavar="DIR",
                        help="a `flaxnets train` work directory: model, classes and preprocessing from its config.json")
    parser.add_argument("--checkpoint", metavar="WHICH",
                        help="with --workdir: latest (default), best or a saved step number")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="with --workdir: use the EMA weights (default: when the run kept them) or, with --no-ema, the raw ones")


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    add_source_arguments(parser)
    parser.add_argument("--tflite", metavar="FILE",
                        help="run a .tflite file from `flaxnets export --format tflite` in the LiteRT "
                             "interpreter instead")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {path, top5}, top5 holding the --top-k classes")
    parser.add_argument("--top-k", type=int, default=5, help="how many classes to print per image (default 5)")
    parser.add_argument("--resolution", type=int, help="input size (default: the model's or the run's)")
    parser.add_argument("--crop-fraction", type=float, help="eval centre-crop fraction (default: the model's or the run's)")
    parser.add_argument("--mean", metavar="R,G,B",
                        help="per-channel mean, 0-255 scale, comma-separated as --set data.mean takes it, "
                             "e.g. 123.7,116.3,103.5 (default: the weights', run's or model's)")
    parser.add_argument("--std", metavar="R,G,B", help="per-channel std, 0-255 scale, as --mean")


def parse_channels(flag: str, text: str | None) -> tuple[float, float, float] | None:
    """Three numbers from `--mean 1,2,3`, the form `--set data.mean=1,2,3` takes (one word, so
    that argparse cannot take the image paths after it for channels); a UsageError naming the
    value otherwise."""
    if text is None:
        return None
    items = text.strip().strip("()[]").split(",")
    try:
        values = tuple(float(item) for item in items)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UsageError(f"{flag} {text}: expected three comma-separated numbers, e.g. {flag} 123.7,116.3,103.5")
    return values


def check_images(paths) -> None:
    """Every path an existing file, before any model is loaded (a typo fails at once)."""
    import os

    for path in paths:
        if not os.path.isfile(path):
            what = "is a folder" if os.path.isdir(path) else "does not exist"
            raise FlaxnetsError(f"image {path} {what}; expected an image file")


def read_images(paths, *, resolution: int, crop_fraction: float, interpolation: str, crop: str):
    """(uint8 NHWC batch, the paths it holds) of image files, each decoded and centre-cropped by
    the evaluation's own transform (`flaxnets.data.transforms.eval_transform`), so predict sees
    what eval sees. A file that cannot be read or decoded is reported once and left out; none
    readable is an error."""
    import numpy as np

    from flaxnets.data.decode import DecodeError, report_bad_file
    from flaxnets.data.transforms import eval_transform

    images, read = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
            images.append(eval_transform(data, image_size_px=resolution, crop_fraction=crop_fraction,
                                         interpolation=interpolation, crop=crop))
            read.append(path)
        except (OSError, DecodeError) as e:
            report_bad_file(str(path), str(e) or type(e).__name__)
    if not images:
        raise FlaxnetsError(f"none of the {len(paths)} images could be decoded"
                            if len(paths) > 1 else f"cannot decode image {paths[0]}")
    return np.stack(images), read


def classify(model, images, *, mean, std, top_k: int = 5):
    """Top-k (class_id, probability) per image for a uint8 NHWC batch through the evaluation's
    compiled step (`flaxnets.train.evaluate`); also returns the number of classes."""
    import numpy as np

    from flaxnets.train import parallel
    from flaxnets.train.evaluate import model_evaluator, predict_logits

    mesh = parallel.make_mesh()
    eval_step, variables = model_evaluator(model, mean=mean, std=std, mesh=mesh)
    logits = predict_logits(eval_step, variables, images, mesh).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    top = np.argsort(-probs, axis=-1)[:, :top_k]
    return [[(int(c), float(p[c])) for c in row] for row, p in zip(top, probs)], probs.shape[-1]


def load_pretrained(model_name: str, weights: str):
    """(model, mean, std) with `weights` loaded, the model built as the file's origin needs
    (TF SAME padding and eps 1e-3 for TF-trained weights); mean/std None = the model's default."""
    from flaxnets.weights import create_pretrained

    model, info = create_pretrained(model_name, weights)
    return model, info.mean, info.std


@dataclasses.dataclass
class Loaded:
    """A network in eval mode with the preprocessing its weights expect."""

    model: object
    resolution: int
    crop_fraction: float
    interpolation: str
    mean: tuple
    std: tuple
    #: Class names in label order, or None when unknown (ids only).
    class_names: list[str] | None
    #: The reference pipeline (a `data.crop` flavour) whose centre crop and resize evaluate it.
    crop: str = "tf_vision"
    #: The training data's class names (class folders, ImageNet synsets) in label order, by
    #: which a folder of class folders is matched to the model; None when unknown.
    data_class_names: list[str] | None = None
    #: The run's `quant` section when it trained with quantization-aware training (`model` then
    #: computes with int8 fake quantization and holds the learned activation ranges), else None.
    quant: object = None


def check_source(args) -> None:
    """Exactly one of --workdir DIR or --model NAME with --weights FILE; --checkpoint and
    --ema only with --workdir. Raises UsageError otherwise."""
    if args.workdir and (args.model or args.weights):
        raise UsageError("give either --workdir DIR or --model NAME with --weights FILE, not both")
    if not args.workdir:
        if bool(args.model) != bool(args.weights):
            given, missing = ("--model", "--weights FILE") if args.model else ("--weights", "--model NAME")
            raise UsageError(f"{given} needs {missing} (or give --workdir DIR instead)")
        if not args.model:
            raise UsageError("give either --workdir DIR or --model NAME with --weights FILE")
        if args.checkpoint is not None or args.ema is not None:
            raise UsageError("--checkpoint and --ema/--no-ema choose weights in a --workdir; they need --workdir DIR")


def load_source(args, stream=None, *, dtype: str | None = None) -> Loaded:
    """The network and its eval preprocessing from --model/--weights or --workdir (the run's
    config.json; EMA weights when the run kept them unless --no-ema, said on `stream`).

    `dtype`: the compute dtype of a --workdir network (None: the run's); a run trained in
    another precision is rebuilt in `dtype` around its float32 weights, said on `stream`.
    Imported weights are always float32."""
    from flaxnets.weights import imagenet_class_names
    from flaxnets.imagenet import imagenet_synsets

    stream = sys.stderr if stream is None else stream
    check_source(args)
    if args.workdir:
        from flaxnets.train.restore import restore_run

        run = restore_run(args.workdir, args.checkpoint or "latest")
        ema = run.has_ema if args.ema is None else args.ema
        model = run.model(ema=ema, dtype=dtype)
        if ema:
            which = "EMA weights (--no-ema for the raw weights)"
        else:
            which = "raw weights" + ("" if run.has_ema else " (the run kept no EMA)")
        print(f"{run.workdir}: {run.config.model.name}, checkpoint step {run.step}, {which}", file=stream)
        if dtype is not None and dtype != run.config.model.dtype:
            print(f"{run.workdir}: trained with {run.config.model.dtype} compute; its weights are float32, "
                  f"so the network is rebuilt to compute in {dtype}", file=stream)
        prep = run.preprocessing()
        num_classes = run.config.model.num_classes
        names = imagenet_class_names() if num_classes == 1000 else run.class_names
        return Loaded(model, prep["image_size"], prep["crop_fraction"], prep["interpolation"],
                      tuple(prep["mean"]), tuple(prep["std"]), names, prep["crop"], run.class_names,
                      run.config.quant if run.config.quant.mode == "qat" else None)
    from flaxnets.models import get_spec

    spec = get_spec(args.model)
    model, mean, std = load_pretrained(args.model, args.weights)
    return Loaded(model, spec.resolution, spec.crop_fraction, spec.interpolation, tuple(mean or spec.mean),
                  tuple(std or spec.std), imagenet_class_names(), spec.eval_crop, imagenet_synsets())


def run(args) -> int:
    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: expected a positive integer")
    if args.crop_fraction is not None and not 0 < args.crop_fraction <= 1:
        raise UsageError(f"--crop-fraction {args.crop_fraction}: expected a value in (0, 1]")
    mean, std = parse_channels("--mean", args.mean), parse_channels("--std", args.std)
    if std is not None and min(std) <= 0:
        raise UsageError(f"--std {args.std}: expected three positive numbers")
    if not args.tflite:
        check_source(args)
    check_images(args.images)
    if args.tflite:
        model, prep = _tflite.predict_source(args)
        loaded = Loaded(model, prep.resolution, prep.crop_fraction, prep.interpolation, prep.mean, prep.std,
                        prep.class_names, prep.crop)
    else:
        loaded = load_source(args)
    resolution = args.resolution or loaded.resolution
    crop_fraction = args.crop_fraction or loaded.crop_fraction
    mean = mean or loaded.mean
    std = std or loaded.std
    images, paths = read_images(args.images, resolution=resolution, crop_fraction=crop_fraction,
                                interpolation=loaded.interpolation, crop=loaded.crop)
    classify_batch = _tflite.classify if args.tflite else classify
    results, num_classes = classify_batch(loaded.model, images, mean=mean, std=std, top_k=args.top_k)
    names = loaded.class_names if loaded.class_names and len(loaded.class_names) == num_classes else None
    if args.json:
        out = [
            {"path": path,
             "top5": [{"class_id": c, "name": names[c] if names else None, "prob": p} for c, p in top]}
            for path, top in zip(paths, results)
        ]
        print(json.dumps(out, indent=2))
    else:
        for path, top in zip(paths, results):
            print(path)
            for c, p in top:
                print(f"  {p:7.2%}  {c:4d}" + (f"  {names[c]}" if names else ""))
    if len(paths) < len(args.images):
        print(f"flaxnets predict: {len(args.images) - len(paths)} of {len(args.images)} images skipped as "
              f"undecodable (above); the other {len(paths)} classified", file=sys.stderr)
    return 0
