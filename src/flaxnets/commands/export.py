"""`flaxnets export`: write a model with pretrained weights (--model and --weights) or a training
run's saved weights (--workdir) as a deployable ONNX or LiteRT (TFLite) file."""

from __future__ import annotations

from flaxnets.commands import _tflite
from flaxnets.errors import UsageError

NAME = "export"
HELP = "Export a model with its weights to ONNX (BatchNorm folded, dynamic batch) or LiteRT (TFLite, float32 or int8)."


def add_arguments(parser):
    from flaxnets.commands.predict import add_source_arguments

    add_source_arguments(parser)
    parser.add_argument("--format", default="onnx", choices=["onnx", "tflite"],
                        help="output format: onnx (default) or tflite (LiteRT; needs flaxnets[litert])")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx or model.tflite")
    parser.add_argument("--resolution", type=int, help="input size (default: the model's or the run's)")
    parser.add_argument("--check", action="store_true",
                        help="run the file in onnxruntime (LiteRT for tflite) and print the largest "
                             "relative difference from JAX")
    _tflite.add_export_arguments(parser)


def run(args) -> int:
    from flaxnets import quant
    from flaxnets.commands.predict import check_source, load_source
    from flaxnets.export.onnx import export_onnx, relative_difference
    from flaxnets.models.registry import MIN_RESOLUTION

    check_source(args)
    _tflite.check_export_arguments(args)
    if args.resolution is not None and args.resolution < MIN_RESOLUTION:
        raise UsageError(f"--resolution {args.resolution}: expected at least {MIN_RESOLUTION}")
    # Every format is written in float32 (ONNX's walk and the LiteRT converter take no bfloat16).
    loaded = load_source(args, dtype="float32")
    resolution = args.resolution or loaded.resolution
    if resolution < MIN_RESOLUTION:
        raise UsageError(f"input size {resolution} (the run's): expected at least {MIN_RESOLUTION}; give --resolution")
    if args.format == "tflite":
        return _tflite.export(args, loaded, resolution)
    # A quantization-aware run exports to ONNX as its float network (same weights).
    path = export_onnx(quant.float_model(loaded.model), args.out, resolution=resolution)
    mean, std = loaded.mean, loaded.std
    print(f"wrote {path}: input 'input' float32 [batch, {resolution}, {resolution}, 3] NHWC, "
          f"normalised as (x - {tuple(round(m, 3) for m in mean)}) / {tuple(round(s, 3) for s in std)} "
          f"on the 0-255 scale; output 'logits' [batch, classes]")
    if args.check:
        difference = relative_difference(quant.float_model(loaded.model), path, resolution)
        print(f"onnxruntime vs JAX, largest relative difference: {difference:.2e}")
    return 0
