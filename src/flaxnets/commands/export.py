"""`flaxnets export`: write a model with pretrained weights as a deployable ONNX file."""

from __future__ import annotations

from flaxnets.errors import UsageError

NAME = "export"
HELP = "Export a model with its weights to ONNX (BatchNorm folded, dynamic batch)."


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="model name, e.g. mobilenet_v3_small")
    parser.add_argument("--weights", required=True, help="weights file (.pth/.bin/.safetensors/.weights.h5/.keras)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="output format (onnx)")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--resolution", type=int, help="input size (default: the model's)")
    parser.add_argument("--check", action="store_true",
                        help="run the file in onnxruntime on random inputs and print the largest relative difference from JAX")


def run(args) -> int:
    from flaxnets.commands.predict import load_pretrained
    from flaxnets.export.onnx import export_onnx, relative_difference
    from flaxnets.models import get_spec

    spec = get_spec(args.model)
    resolution = args.resolution or spec.resolution
    if resolution < 32:
        raise UsageError(f"--resolution {resolution}: expected at least 32")
    model, mean, std = load_pretrained(args.model, args.weights)
    path = export_onnx(model, args.out, resolution=resolution)
    mean, std = mean or spec.mean, std or spec.std
    print(f"wrote {path}: input 'input' float32 [batch, {resolution}, {resolution}, 3] NHWC, "
          f"normalised as (x - {tuple(round(m, 3) for m in mean)}) / {tuple(round(s, 3) for s in std)} "
          f"on the 0-255 scale; output 'logits' [batch, classes]")
    if args.check:
        print(f"onnxruntime vs JAX, largest relative difference: {relative_difference(model, path, resolution):.2e}")
    return 0

