"""The LiteRT (TFLite) parts of `flaxnets export --format tflite` and `flaxnets predict --tflite`
(a helper of those commands, not a command itself: the leading underscore keeps it out of the CLI)."""

from __future__ import annotations

import json
import pathlib
import sys

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.export.tflite import (CALIBRATION_IMAGES, LiteRTModel, Preprocessing, export_tflite,
                                    read_calibration, relative_difference, require_litert)
from flaxnets.train.workdir import EXPORTS_FILE

#: Images run at once through each network by `--check-data`.
_CHECK_BATCH = 256

#: Images compared in `--check` of a float export (random pixels) and, at most, of an int8 one
#: (calibration images).
CHECK_IMAGES = 8


def add_export_arguments(parser):
    """--int8, --calibration, --calibration-images, --include-preprocessing."""
    parser.add_argument("--int8", action="store_true",
                        help="tflite: full-integer int8 (post-training quantization with --calibration; "
                             "a quant.mode=qat run's own learned ranges without it)")
    parser.add_argument("--calibration", metavar="DIR",
                        help="tflite --int8: a folder of images or of class folders to calibrate on, "
                             "through the model's eval transform")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                        help=f"tflite --int8: how many images of --calibration to use (default {CALIBRATION_IMAGES})")
    parser.add_argument("--check-data", metavar="DIR",
                        help="tflite: a folder of the run's class folders (e.g. held-out images): print the "
                             "top-1 of the file and of the JAX network on them (a --workdir run records it "
                             f"in WORKDIR/{EXPORTS_FILE}, which `flaxnets report` shows)")
    parser.add_argument("--include-preprocessing", action="store_true",
                        help="tflite: the model takes raw uint8 RGB pixels (cropped and resized) and normalises inside")


def check_export_arguments(args) -> None:
    """Usage errors for the tflite flags, and the one-line error when the extra is missing;
    before any model is loaded."""
    given = [flag for flag, on in (("--int8", args.int8), ("--calibration", args.calibration),
                                   ("--include-preprocessing", args.include_preprocessing)) if on]
    if args.check_data:
        given.append("--check-data")
    if args.format != "tflite":
        if given:
            raise UsageError(f"{given[0]} applies to --format tflite, not {args.format}")
        return
    if args.int8 and not args.calibration and not args.workdir:
        # Imported weights never carry learned ranges (a --workdir run may: checked once loaded).
        raise UsageError("--int8 needs --calibration DIR (a folder of images to calibrate on)")
    if args.calibration and not args.int8:
        raise UsageError("--calibration applies to --int8 export; add --int8")
    if args.calibration_images < 1:
        raise UsageError(f"--calibration-images {args.calibration_images}: expected a positive integer")
    require_litert()


def export(args, loaded, resolution: int) -> int:
    """Write the .tflite file for `loaded` (a `predict.Loaded`) and print what it takes."""
    import numpy as np

    from flaxnets import quant
    from flaxnets.data.decode import skipped_note

    prep = Preprocessing(resolution, loaded.crop_fraction, loaded.interpolation, tuple(loaded.mean),
                         tuple(loaded.std), loaded.class_names, args.include_preprocessing, loaded.crop)
    qat = args.int8 and loaded.quant is not None
    if qat and args.calibration:
        raise UsageError("--calibration: this quantization-aware run's int8 export uses the ranges it "
                         "learned in training; drop --calibration")
    if args.int8 and not qat and not args.calibration:
        raise UsageError("--int8 needs --calibration DIR (a folder of images to calibrate on), "
                         "unless the run trained with quant.mode=qat")
    calibration = None
    if qat:
        print("int8 with the activation ranges learned in quantization-aware training (no calibration)")
    elif args.int8:
        found = read_calibration(args.calibration, args.calibration_images, resolution=resolution,
                                 crop_fraction=loaded.crop_fraction, interpolation=loaded.interpolation,
                                 crop=loaded.crop, class_names=loaded.data_class_names)
        calibration = found.images
        where = (f"{len(found.class_folders)} class folder{'s' if len(found.class_folders) != 1 else ''} of "
                 if found.class_folders else "")
        skipped = f"; {skipped_note(found.skipped)}" if found.skipped else ""
        print(f"calibrating on {len(calibration)} of the {found.found:,} images found in {where}"
              f"{args.calibration}{skipped}")
    path = export_tflite(loaded.model, args.out, prep=prep, calibration=calibration,
                         qat=loaded.quant if qat else None)
    kind = "int8 (full integer)" if args.int8 else "float32"
    if args.include_preprocessing:
        given = "uint8 raw RGB pixels (centre-cropped, resized)"
    else:
        given = (f"{'int8 (quantised, see the tensor scale/zero point)' if args.int8 else 'float32'} "
                 f"normalised as (x - {tuple(round(m, 3) for m in prep.mean)}) / "
                 f"{tuple(round(s, 3) for s in prep.std)} on the 0-255 scale")
    output = "int8 logits (dequantise with the tensor scale/zero point)" if args.int8 else "float32 logits"
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB), {kind}: input 'input' [1, {resolution}, "
          f"{resolution}, 3] NHWC {given}; output 'logits' [1, classes] {output}; batch 1 "
          f"(resize the interpreter's input for batches)")
    if args.check:
        if calibration is None:
            images = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, resolution, resolution, 3), np.uint8)
            what = f"{CHECK_IMAGES} random images"
        else:
            images = calibration[:CHECK_IMAGES]
            what = f"{len(images)} calibration images"
        # A QAT run's int8 file is held to its fake-quantized network, anything else to the float one.
        reference = loaded.model if qat else quant.float_model(loaded.model)
        difference, agreement = relative_difference(reference, path, images, mean=prep.mean, std=prep.std)
        print(f"LiteRT vs JAX on {what}: largest relative difference {difference:.2e}, "
              f"top-1 agreement {agreement:.0%}")
    held_out = None
    if args.check_data:
        # As --check: a QAT run's int8 file beside its fake-quantized network, else the float one.
        reference = loaded.model if qat else quant.float_model(loaded.model)
        held_out = check_data_top1(args.check_data, path, reference, loaded, prep)
        network = "fake-quantized JAX network" if qat else "float JAX network"
        print(f"top-1 on the {held_out['images']:,} images of {args.check_data}: this file "
              f"{held_out['file_top1']:.2%}, the {network} {held_out['jax_top1']:.2%}")
    if args.workdir:
        record = {"file": str(path.resolve()), "format": "tflite", "int8": bool(args.int8), "qat": qat,
                  "include_preprocessing": bool(args.include_preprocessing),
                  "mib": round(path.stat().st_size / 2**20, 3), "held_out": held_out}
        exports = pathlib.Path(args.workdir) / EXPORTS_FILE
        try:
            with open(exports, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # e.g. a read-only run: the file is written all the same
            print(f"note: not recorded in {exports} ({e.strerror or e})", file=sys.stderr)
    return 0


def check_data_top1(folder, path, reference, loaded, prep) -> dict:
    """The top-1 of the .tflite file at `path` and of the JAX network `reference` on the images
    of `folder`'s class folders (named as the run's training classes), through the eval transform."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from flaxnets.data.decode import DecodeError, report_bad_file
    from flaxnets.data.sources import is_image_name
    from flaxnets.data.transforms import eval_transform, normalize

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--check-data {folder}: not a folder (expected a folder of class folders)")
    names = loaded.data_class_names or loaded.class_names
    if names is None:
        raise UsageError("--check-data needs the training classes' names, which this source does not record")
    files = sorted(p for p in folder.rglob("*") if is_image_name(p.name) and p.is_file() and p.parent != folder)
    if not files:
        raise UsageError(f"--check-data {folder}: no image files in class folders found")
    images, labels = [], []
    for file in files:
        name = file.relative_to(folder).parts[0]
        if name not in names:
            raise FlaxnetsError(f"--check-data {folder}: folder {name!r} is not among the run's "
                                f"{len(names)} classes; expected a folder of the run's class folders")
        try:
            images.append(eval_transform(file.read_bytes(), image_size_px=prep.resolution,
                                         crop_fraction=prep.crop_fraction, interpolation=prep.interpolation,
                                         crop=prep.crop))
        except (DecodeError, OSError) as e:
            report_bad_file(str(file), str(e) or type(e).__name__)
            continue
        labels.append(names.index(name))
    labels = np.asarray(labels)
    lite = LiteRTModel(path)
    reference.eval()
    graphdef, state = nnx.split(reference)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(normalize(x, prep.mean, prep.std)))
    file_top1 = jax_top1 = 0
    size = min(_CHECK_BATCH, len(labels))
    for start in range(0, len(labels), size):
        y = labels[start:start + size]
        # The last batch padded to the others' size (its padding's predictions dropped): one compile.
        batch = np.stack(images[start:start + size] + [images[-1]] * (size - len(y)))
        file_top1 += int((lite.logits(batch)[:len(y)].argmax(-1) == y).sum())
        jax_top1 += int((np.asarray(forward(state, jnp.asarray(batch)))[:len(y)].argmax(-1) == y).sum())
    return {"data": str(folder.resolve()), "images": len(labels), "file_top1": file_top1 / len(labels),
            "jax_top1": jax_top1 / len(labels)}


def predict_source(args) -> tuple[LiteRTModel, Preprocessing]:
    """`predict --tflite FILE`: the file in the interpreter and the preprocessing its metadata
    records."""
    if args.workdir or args.model or args.weights or args.checkpoint is not None or args.ema is not None:
        raise UsageError("--tflite FILE replaces --workdir/--model/--weights; give only one source")
    model = LiteRTModel(args.tflite)
    prep = model.prep
    if prep is None:
        raise FlaxnetsError(f"--tflite {args.tflite}: no flaxnets metadata (expected a file written by "
                            "`flaxnets export --format tflite`)")
    if args.resolution is not None and args.resolution != model.resolution:
        raise UsageError(f"--resolution {args.resolution}: {args.tflite} takes "
                         f"{model.resolution} x {model.resolution} images")
    return model, prep


def classify(model, images, *, mean, std, top_k: int):
    """Top-k (class_id, probability) per uint8 image and the number of classes, as
    `predict.classify` returns them, from a `LiteRTModel`."""
    import numpy as np

    logits = model.logits(images, mean=mean, std=std)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = np.argsort(-probs, axis=-1)[:, :top_k]
    return [[(int(c), float(p[c])) for c in row] for row, p in zip(top, probs)], probs.shape[-1]
