"""LiteRT (TFLite) export without TensorFlow: float32 or full-integer int8.

The route (all optional dependencies, `pip install 'flaxnets[litert]'`):

1. `jax.export` the eval-mode forward pass for the CPU at batch 1, weights closed over as
   constants, convolutions traced as `lax` convolutions (one CONV_2D / DEPTHWISE_CONV_2D each),
   and serialise it as a StableHLO portable artifact (VHLO bytecode).
2. `litert-converter` (Google's MLIR converter as a native library, no TensorFlow): legalise the
   VHLO to StableHLO and run its TFLite conversion passes through `converter_api_ext`, the
   low-level API litert-torch calls (undocumented, hence the exact pins and the parity tests in
   tests/export/test_tflite.py). The passes fold BatchNorm into the convolutions and fuse
   ReLU/ReLU6 into them; every op is a LiteRT builtin.
3. int8: `litert-quantizer`'s static recipe `static_wi8_ai8` (int8 weights per channel, int8
   activations per tensor, min/max calibrated on images run through the float model). Its result
   takes an int8 input and returns int8 logits (scale and zero point in the tensors'
   quantization parameters), with no QUANTIZE/DEQUANTIZE at the boundaries. The int8 model is
   traced with hard-swish split (`flaxnets.models.layers.hard_swish_split`) so that the converter
   leaves no HARD_SWISH op, which XNNPACK runs only in float: every int8 op runs in one XNNPACK
   partition (`xnnpack_partitions`), but for the uint8 pixels' QUANTIZE of `include_preprocessing`,
   which XNNPACK does not take (it runs before the partition).
4. int8 of a quantization-aware run (`quant.mode=qat`, `flaxnets.quant`): no calibration. The
   network is traced with Qwix's conversion provider, every fake quantization a
   `quant.fake_quant` composite holding the scale and zero point Qwix computes from the weights
   and the ranges learned in training; the converter's strict static QDQ mode makes the int8
   model from them, and the float input's QUANTIZE and the output's DEQUANTIZE are dropped so it
   takes and gives int8 as the quantizer's does (`_integer_boundaries`). No float op remains and
   the graph is one XNNPACK partition. `include_preprocessing` is not available there.

Input and output:

- float32 export: input `input` float32 [1, R, R, 3] NHWC, normalised as `model(x)` expects;
  output `logits` float32 [1, classes].
- `include_preprocessing`: input uint8 [1, R, R, 3] raw RGB pixels (already cropped and resized
  to R x R); the graph computes (x - mean) / std. With int8 the uint8 input feeds the first
  QUANTIZE (uint8 -> int8 requantisation, scale 1, zero point 0) directly: no float op remains.
- int8 without preprocessing: input int8, the normalised image quantised with the input tensor's
  (scale, zero point); output int8 logits, dequantised as (q - zero_point) * scale.

The batch is 1 (a symbolic batch would need the converter's dynamic-broadcast fusion and
leaves QUANTIZE/DEQUANTIZE ops in int8 models); for batches, resize the input before
allocating: ``interpreter.resize_tensor_input(input_index, [n, R, R, 3]);
interpreter.allocate_tensors()`` (`LiteRTModel` does this).

The file carries a metadata entry `flaxnets` (JSON: resolution, crop fraction, interpolation,
mean, std, class names, whether preprocessing is included) so `flaxnets predict --tflite` can
preprocess images as the exported weights expect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import pathlib
import re
import sys
import tempfile

import numpy as np

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.text import plural

SIGNATURE = "serving_default"
INPUT = "input"
OUTPUT = "logits"
METADATA = "flaxnets"
#: Calibration images used by default for int8 export.
CALIBRATION_IMAGES = 300
_EXTRA = "pip install 'flaxnets[litert]'"
#: What the libraries print on stderr, unasked, on every run: the interpreter when it applies
#: its default XNNPACK delegate, the converter when its absl logging and oneDNN start, and the
#: quantizer's progress bars (which, captured, would arrive only when done).
_NATIVE_CHATTER = ("Created TensorFlow Lite XNNPACK delegate", "absl::InitializeLog()",
                   "oneDNN custom operations are on", "Running Calibration::",
                   "Generating Quantization Parameters::", "Applying Transformations to tensors::")


@contextlib.contextmanager
def _without_native_chatter():
    """Run the block with the C++ libraries' stderr (file descriptor 2, which Python's logging
    settings do not reach) captured, then pass on every line but the `_NATIVE_CHATTER` ones."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(text in line for text in _NATIVE_CHATTER))
            if kept.strip():
                sys.stderr.write(kept)
                sys.stderr.flush()


def require_litert(*, export: bool = True) -> None:
    """Raise FlaxnetsError (one line, naming the extra) unless the LiteRT packages import:
    the converter and quantizer for export, the interpreter always."""
    modules = ["ai_edge_litert.interpreter"]
    if export:
        modules += ["litert_converter", "litert_quantizer"]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise FlaxnetsError(f"LiteRT (TFLite) needs the optional dependencies ({name} is missing): {_EXTRA}") from e


@dataclasses.dataclass
class Preprocessing:
    """The eval preprocessing an exported model expects (stored in the file's metadata)."""

    resolution: int
    crop_fraction: float
    interpolation: str
    mean: tuple
    std: tuple
    class_names: list[str] | None = None
    #: True: the model takes raw uint8 pixels and normalises inside.
    included: bool = False
    #: The reference pipeline (a `data.crop` flavour) whose centre crop and resize feed it.
    crop: str = "tf_vision"


def _stablehlo(model, resolution: int, prep: Preprocessing | None) -> bytes:
    """The eval forward pass as a serialised StableHLO portable artifact, batch 1; with `prep`
    it takes uint8 pixels and normalises them first."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from flaxnets.data.transforms import normalize
    from flaxnets.models.layers import conv_implementation

    model.eval()
    graphdef, state = nnx.split(model)

    def forward(x):
        if prep is not None:
            x = normalize(x, prep.mean, prep.std)
        return nnx.merge(graphdef, state)(x)

    dtype = jnp.uint8 if prep is not None else jnp.float32
    # One lax convolution per layer: the unrolled CPU forms would become many small ops.
    with conv_implementation("lax"):
        exported = jax.export.export(jax.jit(forward), platforms=["cpu"])(
            jax.ShapeDtypeStruct((1, resolution, resolution, 3), dtype))
    return exported.mlir_module_serialized


def _convert(serialized: bytes, *, qdq: bool = False) -> bytes:
    """A StableHLO portable artifact -> a float LiteRT flatbuffer (litert-converter); with `qdq`,
    its `quant.fake_quant` composites (`flaxnets.quant.conversion_model`) become int8 tensors
    (the converter's strict static QDQ mode: each op between them runs in int8)."""
    from litert_converter.mlir import ir, passmanager
    from litert_converter.mlir._mlir_libs import converter_api_ext

    context = ir.Context()
    converter_api_ext.prepare_mlir_context(context)
    with context, ir.Location.unknown():
        module = ir.Module.parse(serialized)
        passmanager.PassManager.parse("builtin.module(vhlo-legalize-to-stablehlo)").run(module.operation)
        converter_api_ext.set_signature(module.operation, signature_name=SIGNATURE,
                                        input_names=[INPUT], output_names=[OUTPUT])
        config = converter_api_ext.ConvertToTFLConfig()
        config.model_origin_framework = "JAX"
        if qdq:
            config.qdq_conversion_mode, config.strict_qdq_mode = "Static", True
        converter_api_ext.run_convert_to_tfl_passes(module, passmanager.PassManager(), config)
        return bytes(converter_api_ext.export_flatbuffer_to_bytes(module.operation))


def _quantize(float_model: bytes, calibration) -> bytes:
    """Full-integer int8 post-training quantization calibrated on `calibration` (model inputs,
    one [R, R, 3] array each)."""
    import warnings

    from litert_quantizer import calibrator, quantizer, recipe, recipe_manager
    from litert_quantizer.utils import qsv_utils

    static_int8 = recipe.static_wi8_ai8()
    recipes = recipe_manager.RecipeManager()
    recipes.load_quantization_recipe(static_int8)
    # Quantizer.calibrate keeps a moving average (factor 0.95) of each image's min/max, which
    # undershoots the ranges of a varied image set and clips confident logits; keep the overall
    # min and max instead, as TensorFlow's calibrator does.
    with warnings.catch_warnings():
        # The calibrator keeps every tensor (a warning says so), and int32 biases that overflow
        # (cast warnings) are redone by `_fit_biases`.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        calibration_run = calibrator.Calibrator(float_model, qsv_update_func=qsv_utils.min_max_update)
        calibration_run.calibrate({SIGNATURE: [{INPUT: np.asarray(x)[None]} for x in calibration]}, recipes)
        q = quantizer.Quantizer(float_model, static_int8)
        return bytes(q.quantize(calibration_run.get_model_qsvs(), enable_progress_report=False).quantized_model)


#: The largest int32 bias `_fit_biases` leaves: half the int32 range, so that adding the products
#: (at most 127 * 128 * the inputs per output, far below 2^30) cannot overflow the accumulator.
_BIAS_LIMIT = 2**30


def _fit_biases(model, float_model) -> None:
    """Widen the weight scale of channels whose int32 bias would overflow, as TensorFlow's
    quantizer does (`AdjustWeightsForBiasScale` in tensorflow/lite/tools/optimize).

    A bias is stored with scale input_scale * weight_scale. Trained networks have channels whose
    folded weights are almost zero (EfficientNet-Lite0's pretrained weights have dozens), so the
    weight scale, and with it the bias scale, is tiny and the bias does not fit in int32. For those
    channels the weight scale becomes |bias| / (input_scale * 2^30), the weights are
    requantised (to about 0, which they were) and the bias is stored exactly. `model` and
    `float_model` are `ModelT`s; a tensor of `model` is found in `float_model` by name. The
    quantizer keeps the float model's tensors and names, and gives each user of a shared constant
    (EfficientNet's convolutions share their zero bias) its own copy, named
    `<name>_duplicated_<n>` and appended after them."""
    from ai_edge_litert import schema_py_generated as schema

    graph, float_graph = model.subgraphs[0], float_model.subgraphs[0]
    by_name = {tensor.name: tensor for tensor in float_graph.tensors}

    def float_data(index):
        name = graph.tensors[index].name
        tensor = by_name.get(name) or by_name[re.sub(rb"_duplicated_\d+$", b"", name)]
        return np.frombuffer(bytes(float_model.buffers[tensor.buffer].data), np.float32).reshape(tensor.shape)

    for op in graph.operators:
        if len(op.inputs) < 3 or op.inputs[2] < 0 or graph.tensors[op.inputs[2]].type != schema.TensorType.INT32:
            continue
        x, w, b = (graph.tensors[i] for i in op.inputs[:3])
        bias = float_data(op.inputs[2]).astype(np.float64)
        input_scale = float(x.quantization.scale[0])
        weight_scale = np.asarray(w.quantization.scale, np.float64)
        needed = np.abs(bias) / (input_scale * _BIAS_LIMIT)
        if not (needed > weight_scale).any():
            continue
        weight_scale = np.maximum(weight_scale, needed)
        shape = [1] * len(w.shape)
        shape[w.quantization.quantizedDimension] = -1
        weights = np.clip(np.rint(float_data(op.inputs[1]) / weight_scale.reshape(shape)), -127, 127)
        bias_scale = input_scale * weight_scale
        model.buffers[w.buffer].data = np.frombuffer(weights.astype(np.int8).tobytes(), np.uint8)
        model.buffers[b.buffer].data = np.frombuffer(np.rint(bias / bias_scale).astype(np.int32).tobytes(), np.uint8)
        w.quantization.scale = weight_scale.astype(np.float32).tolist()
        b.quantization.scale = bias_scale.astype(np.float32).tolist()


def _integer_boundaries(flatbuffer: bytes) -> bytes:
    """The converted QDQ model with int8 input and output, as the quantizer's: the input enters
    through one QUANTIZE and the output leaves through one DEQUANTIZE; both are dropped and the
    graph takes and gives their int8 tensors (scale and zero point in the tensors)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c) for c in model.operatorCodes]
    (x,), (y,) = graph.inputs, graph.outputs
    first = [op for op in graph.operators if x in op.inputs]
    last = [op for op in graph.operators if y in op.outputs]
    if ([codes[op.opcodeIndex] for op in first] != [schema.BuiltinOperator.QUANTIZE]
            or [codes[op.opcodeIndex] for op in last] != [schema.BuiltinOperator.DEQUANTIZE]):
        raise FlaxnetsError("LiteRT export: expected the QAT model's input to be quantised once and its "
                            "output dequantised once")
    new_x, new_y = first[0].outputs[0], last[0].inputs[0]
    for old, new in ((x, new_x), (y, new_y)):
        graph.tensors[new].name = graph.tensors[old].name
        for signature in model.signatureDefs or []:
            for entry in [*signature.inputs, *signature.outputs]:
                if entry.tensorIndex == old:
                    entry.tensorIndex = new
    graph.inputs, graph.outputs = [new_x], [new_y]
    graph.operators.remove(first[0])
    graph.operators.remove(last[0])
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _finish(flatbuffer: bytes, prep: Preprocessing, *, float_model: bytes | None = None) -> bytes:
    """Add the `flaxnets` metadata entry. For an int8 model (`float_model` the model it was
    quantised from): fit the biases (`_fit_biases`), and with `prep.included` feed the uint8
    input straight into the first QUANTIZE (dropping the CAST to float before it) as a quantised
    tensor with scale 1 and zero point 0, i.e. the pixel values themselves."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    if float_model is not None:
        _fit_biases(model, flatbuffer_utils.read_model_from_bytearray(bytearray(float_model)))
    if float_model is not None and prep.included:
        graph = model.subgraphs[0]
        (pixels,) = graph.inputs
        codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c) for c in model.operatorCodes]
        cast = next((op for op in graph.operators if list(op.inputs) == [pixels]), None)
        if cast is None or codes[cast.opcodeIndex] != schema.BuiltinOperator.CAST:
            raise FlaxnetsError("LiteRT export: expected the uint8 input to enter through one CAST")
        users = [op for op in graph.operators if cast.outputs[0] in op.inputs]
        if [codes[op.opcodeIndex] for op in users] != [schema.BuiltinOperator.QUANTIZE]:
            raise FlaxnetsError("LiteRT export: expected the cast input to be quantised once")
        users[0].inputs = [pixels]
        graph.operators.remove(cast)
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [1.0], [0]
        graph.tensors[pixels].quantization = quantization
    entry = schema.MetadataT()
    entry.name = METADATA
    entry.buffer = len(model.buffers)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(dataclasses.asdict(prep)).encode(), np.uint8)
    model.buffers.append(buffer)
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_tflite(model, path, *, prep: Preprocessing, calibration=None, qat=None) -> pathlib.Path:
    """Write `model` (eval mode) as a LiteRT flatbuffer at `prep.resolution`, batch 1.

    `prep.included`: the model takes raw uint8 pixels and normalises with `prep.mean`/`prep.std`.
    `calibration`: None for float32; else uint8 images [N, R, R, 3] (eval-transformed, see
    `calibration_images`) for full-integer int8 quantization.
    `qat`: the `QuantConfig` of a quantization-aware `model` (`flaxnets.quant`) for its int8
    model with the ranges it learned (no calibration); None: `model`'s float network, or its PTQ
    with `calibration`.
    """
    from flaxnets import quant
    from flaxnets.models.layers import hard_swish_split

    require_litert()
    dtype = np.dtype(getattr(model, "dtype", np.float32))
    if dtype != np.float32:
        raise FlaxnetsError(f"LiteRT export takes a float32 network; this one computes in {dtype.name}, which the "
                            f"converter does not take: rebuild it in float32 around the same weights (flaxnets "
                            f"export --workdir does so for a {dtype.name} run)")
    if qat is not None:
        return _export_qat(model, path, prep=prep, quant_config=qat)
    model = quant.float_model(model)
    # int8: hard-swish in the form XNNPACK's int8 kernels take, so the graph is one partition.
    with hard_swish_split() if calibration is not None else contextlib.nullcontext():
        serialized = _stablehlo(model, prep.resolution, prep if prep.included else None)
    with _without_native_chatter():
        float_model = _convert(serialized)
    flatbuffer = float_model
    if calibration is not None:
        images = np.asarray(calibration, np.uint8)
        if not prep.included:
            images = (images.astype(np.float32) - np.float32(prep.mean)) / np.float32(prep.std)
        with _without_native_chatter():
            flatbuffer = _quantize(float_model, images)
    flatbuffer = _finish(flatbuffer, prep, float_model=float_model if calibration is not None else None)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def _export_qat(model, path, *, prep: Preprocessing, quant_config) -> pathlib.Path:
    """`export_tflite` of a quantization-aware `model`: every int8 scale and zero point is Qwix's
    (the weights' from the weights, the activations' learned in training), carried to the
    converter as `quant.fake_quant` composites; int8 input and output as a PTQ export's."""
    from flaxnets import quant

    if prep.included:
        raise UsageError("--include-preprocessing is not available for the int8 export of a "
                         "quantization-aware run (its input range is learned on normalised images); drop it")
    untrained = quant.untrained_ranges(model)
    if untrained:
        raise FlaxnetsError(f"this quantization-aware run has not learned the range of {untrained[0]} "
                            f"({len(untrained)} activations; no training step saved): train it first")
    converting = quant.conversion_model(model, quant_config, image_size=prep.resolution)
    serialized = _stablehlo(converting, prep.resolution, None)
    with _without_native_chatter():
        flatbuffer = _integer_boundaries(_convert(serialized, qdq=True))
    flatbuffer = _finish(flatbuffer, prep)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


@dataclasses.dataclass
class Calibration:
    """Calibration images read from a folder, and what was found there."""

    #: uint8 [n, R, R, 3], through the eval transform.
    images: np.ndarray
    #: Image files found in the folder (at any depth).
    found: int
    #: Files tried that could not be decoded (each reported once, and replaced by another file).
    skipped: int
    #: The class folders the files were in ([] for a flat folder of images).
    class_folders: list[str]


def read_calibration(folder, count: int, *, resolution: int, crop_fraction: float, interpolation: str,
                     crop: str = "tf_vision", seed: int = 0, class_names: list[str] | None = None) -> Calibration:
    """Up to `count` decodable images of `folder` (image files at any depth, e.g. class folders;
    a seeded random choice when there are more) through the eval transform.

    An undecodable file is reported once (`flaxnets.data.decode.report_bad_file`) and another
    file taken in its place. `class_names` (the model's, when known): the folder's class folders
    must be among them, so that a folder of another data set fails with its name."""
    from flaxnets.data.decode import DecodeError, report_bad_file
    from flaxnets.data.sources import IMAGE_EXTENSIONS, is_image_name
    from flaxnets.data.transforms import eval_transform

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--calibration {folder}: not a folder (expected a folder of images or of class folders)")
    files = sorted(p for p in folder.rglob("*") if is_image_name(p.name) and p.is_file())
    if not files:
        raise UsageError(f"--calibration {folder}: no image files found "
                         f"(expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
    class_folders = sorted({p.relative_to(folder).parts[0] for p in files if p.parent != folder})
    if class_names is not None:
        unknown = [name for name in class_folders if name not in class_names]
        if unknown:
            known = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
            raise FlaxnetsError(f"--calibration {folder}: folder {unknown[0]!r} is not among the model's "
                                f"{plural(len(class_names), 'class')} ({known}); expected a folder of images or of "
                                "the model's class folders")
    images, skipped = [], 0
    for i in np.random.default_rng(seed).permutation(len(files)) if len(files) > count else range(len(files)):
        if len(images) == count:
            break
        try:
            data = files[i].read_bytes()
            images.append(eval_transform(data, image_size_px=resolution, crop_fraction=crop_fraction,
                                         interpolation=interpolation, crop=crop))
        except (DecodeError, OSError) as e:
            report_bad_file(str(files[i]), str(e) or type(e).__name__)
            skipped += 1
    if not images:
        raise FlaxnetsError(f"--calibration {folder}: none of its {len(files)} image files could be decoded")
    return Calibration(np.stack(images), len(files), skipped, class_folders)


def calibration_images(folder, count: int, *, resolution: int, crop_fraction: float,
                       interpolation: str, crop: str = "tf_vision", seed: int = 0) -> np.ndarray:
    """The images of `read_calibration`: uint8 [n, R, R, 3]."""
    return read_calibration(folder, count, resolution=resolution, crop_fraction=crop_fraction,
                            interpolation=interpolation, crop=crop, seed=seed).images


def _model_root(flatbuffer: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema.Model.GetRootAs(flatbuffer, 0)


def read_metadata(path) -> Preprocessing | None:
    """The `flaxnets` metadata of a .tflite file, or None when it has none."""
    data = pathlib.Path(path).read_bytes()
    root = _model_root(data)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name().decode() == METADATA:
            buffer = root.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
                raw = data[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes()
            fields = json.loads(raw)
            return Preprocessing(**{**fields, "mean": tuple(fields["mean"]), "std": tuple(fields["std"])})
    return None


def operator_names(path) -> list[str]:
    """The op of every operator in a .tflite file, in order: builtin names (CONV_2D, ...);
    custom ops (Flex ops included) as CUSTOM:<code>."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    root = _model_root(pathlib.Path(path).read_bytes())
    out = []
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            code = root.OperatorCodes(graph.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                out.append(f"CUSTOM:{code.CustomCode().decode()}")
            else:
                out.append(names[builtin])
    return out


def xnnpack_partitions(path) -> tuple[int, bool]:
    """(the number of XNNPACK delegate partitions, whether one partition runs the whole graph)
    of a .tflite file in the LiteRT interpreter (its default XNNPACK delegate, one thread).

    The interpreter appends one DELEGATE node per partition after the model's operators (read
    with its experimental `_get_ops_details`, hence the pinned ai-edge-litert and the tests). The
    whole graph runs in XNNPACK when there is exactly one partition, taking the model's inputs
    (besides constants) and giving its outputs: an operator left outside would feed it or be
    fed by it."""
    require_litert(export=False)
    from ai_edge_litert.interpreter import Interpreter

    root = _model_root(pathlib.Path(path).read_bytes())
    graph = root.Subgraphs(0)
    buffers = [root.Buffers(graph.Tensors(i).Buffer()) for i in range(graph.TensorsLength())]
    # Constant data lies in the buffer, or after the flatbuffer (Offset) in models over 2 GB.
    constants = {i for i, buffer in enumerate(buffers) if buffer.DataLength() > 0 or buffer.Offset() > 1}
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()[graph.OperatorsLength():]
    delegates = [node for node in nodes if node["op_name"] == "DELEGATE"]
    whole = (len(delegates) == 1
             and {int(i) for i in delegates[0]["inputs"]} - constants == set(graph.InputsAsNumpy().tolist())
             and [int(i) for i in delegates[0]["outputs"]] == graph.OutputsAsNumpy().tolist())
    return len(delegates), whole


class LiteRTModel:
    """A .tflite file in the LiteRT interpreter, fed uint8 images (any batch size)."""

    def __init__(self, path, *, num_threads: int | None = None):
        require_litert(export=False)
        from ai_edge_litert.interpreter import Interpreter

        path = pathlib.Path(path)
        if not path.is_file():
            raise FlaxnetsError(f"--tflite {path}: no such file")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        except ValueError as e:
            raise FlaxnetsError(f"--tflite {path}: not a LiteRT model ({str(e).splitlines()[0]})") from e
        self.prep = read_metadata(path)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.resolution = int(self._input["shape"][1])
        self._batch = None

    @property
    def input_dtype(self):
        """uint8 (raw pixels), float32 or int8 (normalised, quantised)."""
        return np.dtype(self._input["dtype"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Invoke on a batch of model inputs (already of the input tensor's dtype); raw output."""
        if x.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], list(x.shape))
            with _without_native_chatter():  # the first allocation applies the XNNPACK delegate
                self.interpreter.allocate_tensors()
            self._batch = x.shape[0]
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])

    def logits(self, images: np.ndarray, *, mean=None, std=None) -> np.ndarray:
        """float32 logits of uint8 images [N, R, R, 3]; `mean`/`std` (0-255 scale) normalise
        them unless the model includes its preprocessing (default: the file's metadata)."""
        images = np.asarray(images, np.uint8)
        if self.input_dtype == np.uint8:
            x = images
        else:
            if mean is None or std is None:
                if self.prep is None:
                    raise FlaxnetsError("this .tflite file carries no flaxnets metadata: give mean and std")
                mean, std = mean or self.prep.mean, std or self.prep.std
            x = (images.astype(np.float32) - np.float32(mean)) / np.float32(std)
            if self.input_dtype == np.int8:
                scale, zero = self._input["quantization"]
                x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        out = self.run(x)
        if out.dtype != np.float32:
            scale, zero = self._output["quantization"]
            out = (out.astype(np.float32) - zero) * np.float32(scale)
        return out


def relative_difference(model, path, images: np.ndarray, *, mean, std) -> tuple[float, float]:
    """(max |LiteRT - JAX| / max |JAX| over the logits, top-1 agreement) on uint8 `images`,
    JAX computing `model(normalize(images))` as `flaxnets predict` does."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from flaxnets.data.transforms import normalize

    got = LiteRTModel(path).logits(images, mean=mean, std=std)
    model.eval()
    graphdef, state = nnx.split(model)
    want = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(normalize(x, mean, std)))(state, jnp.asarray(images)))
    return (float(np.abs(got - want).max() / np.abs(want).max()),
            float((got.argmax(-1) == want.argmax(-1)).mean()))
