"""Quantization-aware training (`quant.mode=qat`, `flaxnets.quant`): the keys are checked, the
learned activation ranges are part of the train state (an interrupted run resumes to exactly the
uninterrupted run's weights and ranges), and a digits MobileNet v3 Small trained with QAT exports
to an int8 LiteRT model of builtin int8 ops, in one XNNPACK partition, whose held-out top-1 is
within 0.5 points of the fake-quantized JAX network's."""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix
from flax import nnx

from flaxnets.cli import main
from flaxnets.config import Config, apply_overrides
from flaxnets.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from loop_helpers import NUM_STEPS, saved_state, train, train_losses  # noqa: E402


def test_quant_keys_are_checked():
    """One-line errors for a mode or a calibration Qwix and LiteRT do not have; minmax with a
    factor is accepted."""
    with pytest.raises(UsageError, match="quant.mode"):
        apply_overrides(Config(), ["quant.mode=int4"])
    for bad in ("percentile", "minmax,2", "absmax,x", "minmax,0.5,1"):
        with pytest.raises(UsageError, match=r"quant.activation_calibration=.*expected minmax or absmax"):
            apply_overrides(Config(), [f"quant.activation_calibration={bad}"]).validate()
    apply_overrides(Config(), ["quant.mode=qat", "quant.activation_calibration=minmax,0.9"]).validate()
    with pytest.raises(UsageError, match=r"^quant.mode=qat with model.dtype=bfloat16: .* \(set model.dtype=float32\)$"):
        apply_overrides(Config(), ["quant.mode=qat", "model.dtype=bfloat16"]).validate()
    apply_overrides(Config(), ["model.dtype=bfloat16"]).validate()


@pytest.fixture(scope="module")
def qat_runs(digits, tmp_path_factory):
    """The tiny network of `loop_helpers` with QAT: a whole run, and one stopped after step 5 and
    resumed to the end."""
    root = tmp_path_factory.mktemp("qat")
    train(digits, root / "a", "quant.mode=qat")
    train(digits, root / "resumed", "quant.mode=qat", stop_after_steps=5)
    train(digits, root / "resumed", "quant.mode=qat")
    return root


@pytest.mark.slow
def test_qat_resumes_exactly_with_its_learned_ranges(qat_runs):
    """The activation ranges (Qwix's count and sums) are saved and restored with the weights: the
    resumed run ends with the uninterrupted run's losses, weights and ranges, every range updated
    once per step."""
    assert train_losses(qat_runs / "resumed") == train_losses(qat_runs / "a")
    step_a, a = saved_state(qat_runs / "a")
    step_r, r = saved_state(qat_runs / "resumed")
    assert step_a == step_r == NUM_STEPS and a.keys() == r.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], r[key], err_msg=key)
    counts = {key: value for key, value in a.items() if "other" in key and "'count'" in key}
    assert counts and all(int(c) == NUM_STEPS for c in counts.values()), counts
    summary = (qat_runs / "a" / "summary.txt").read_text()
    assert "quantization-aware: int8 weights (per channel) and int8 activations (minmax ranges)" in summary


@pytest.fixture(scope="module")
def qat_mobilenet(digits, tmp_path_factory):
    """digits_demo's MobileNet v3 Small trained 4 epochs with QAT (BatchNorm momentum 0.5 so the
    running statistics of so short a run fit the weights) and its int8 LiteRT export."""
    workdir = tmp_path_factory.mktemp("qat-mnv3") / "run"
    assert main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(workdir),
                 "--set", "quant.mode=qat", "--set", "train.epochs=4", "--set", "schedule.warmup_epochs=1",
                 "--set", "model.bn_momentum=0.5", "--set", "eval.every_epochs=4"]) == 0
    path = workdir.parent / "int8.tflite"
    assert main(["export", "--workdir", str(workdir), "--format", "tflite", "--int8", "--out", str(path),
                 "--check", "--check-data", str(digits / "val")]) == 0
    return workdir, path


@pytest.mark.slow
def test_qat_int8_export_matches_its_fake_quant_model(digits, qat_mobilenet, capsys):
    """No calibration set (one is refused); every op a builtin int8 op in one XNNPACK partition;
    held-out top-1 within 0.5 points of the QAT network's own (fake-quantized) top-1."""
    from flaxnets.data import normalize, open_source
    from flaxnets.data.transforms import eval_transform
    from flaxnets.export.tflite import LiteRTModel, operator_names, read_metadata, xnnpack_partitions
    from flaxnets.train.restore import restore_run

    workdir, path = qat_mobilenet
    assert main(["export", "--workdir", str(workdir), "--format", "tflite", "--int8", "--out",
                 str(path.parent / "x.tflite"), "--calibration", str(digits / "train")]) == 2
    assert "uses the ranges it learned in training; drop --calibration" in capsys.readouterr().err
    ops = operator_names(path)
    assert ops.count("CONV_2D") > 10 and "DEPTHWISE_CONV_2D" in ops
    assert not [op for op in ops if op.startswith("CUSTOM") or op.startswith("STABLEHLO")], ops
    # Whole-graph int8: no QUANTIZE/DEQUANTIZE pair leaves a float op between them.
    assert "DEQUANTIZE" not in ops and "HARD_SWISH" not in ops
    assert xnnpack_partitions(path) == (1, True)
    lite = LiteRTModel(path)
    assert lite.input_dtype == np.int8

    run = restore_run(workdir)
    model = run.model()
    assert qwix.QuantStat in {type(v) for _, v in nnx.to_flat_state(nnx.state(model, qwix.QuantStat))}
    prep = read_metadata(path)
    val = open_source(digits, "val")
    images = np.stack([eval_transform(val[i][0], image_size_px=32, crop_fraction=prep.crop_fraction,
                                      interpolation=prep.interpolation, crop=prep.crop) for i in range(len(val))])
    labels = np.asarray([val[i][1] for i in range(len(val))])
    graphdef, state = nnx.split(model)
    jax_logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(normalize(x, prep.mean, prep.std)))(
        state, jnp.asarray(images))
    jax_top1 = (np.asarray(jax_logits).argmax(-1) == labels).mean()
    int8_top1 = (lite.logits(images).argmax(-1) == labels).mean()
    figures = f"held-out top-1: fake-quant JAX {jax_top1:.2%}, int8 LiteRT {int8_top1:.2%}"
    assert jax_top1 > 0.5, figures  # a trained network, or the comparison says little
    assert abs(int8_top1 - jax_top1) <= 0.005, figures

    # `--check-data` measured the same figures and recorded them in the run; the report shows them.
    (record,) = [json.loads(line) for line in (workdir / "exports.jsonl").read_text().splitlines()]
    assert record["held_out"] == {"data": str((digits / "val").resolve()), "images": len(val),
                                  "file_top1": int8_top1, "jax_top1": jax_top1}
    assert record["int8"] and record["qat"] and record["file"] == str(path.resolve())
    assert main(["report", str(workdir), "--out", str(workdir.parent / "report")]) == 0
    report = (workdir.parent / "report" / "report.md").read_text()
    assert "- Quantization-aware training (quant.mode=qat): int8 weights (per channel)" in report
    assert (f"- LiteRT export `{path.resolve()}` (int8, the ranges learned in training, "
            f"{path.stat().st_size / 2**20:.2f} MiB): top-1 on {len(val)} images of `{(digits / 'val').resolve()}`: "
            f"{100 * int8_top1:.2f}% for the file, {100 * jax_top1:.2f}% for the run's fake-quantized network "
            f"({100 * (int8_top1 - jax_top1):+.2f} points)") in report, report


def test_qat_export_refuses_untrained_ranges(tmp_path):
    """A QAT network that never trained has no ranges to export: one error, nothing written; its
    float network carries no quantization."""
    from flaxnets import quant
    from flaxnets.errors import FlaxnetsError
    from flaxnets.export.tflite import Preprocessing, export_tflite
    from flaxnets.train.from_config import create_model_from_config

    import loop_helpers

    original = loop_helpers.flaxnets.models.create_model
    loop_helpers.flaxnets.models.create_model = loop_helpers.create_tiny_model
    try:
        config = apply_overrides(Config(), ["quant.mode=qat", "model.num_classes=10", "data.image_size=32"])
        model = create_model_from_config(config)
    finally:
        loop_helpers.flaxnets.models.create_model = original
    assert quant.is_quantized(model) and quant.untrained_ranges(model)
    model.eval()
    with pytest.raises(FlaxnetsError, match="has not learned the range of"):
        export_tflite(model, tmp_path / "m.tflite", prep=Preprocessing(32, 1.0, "bilinear", (127.5,) * 3,
                                                                       (127.5,) * 3), qat=config.quant)
    assert not (tmp_path / "m.tflite").exists()
    assert not quant.is_quantized(quant.float_model(model))


def _float_tensors(path) -> list[str]:
    """The float32 tensors the ops of a .tflite file take or give."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model(str(path)).subgraphs[0]
    used = {i for op in graph.operators for i in [*op.inputs, *op.outputs] if i >= 0}
    return [graph.tensors[i].name.decode() for i in sorted(used) if graph.tensors[i].type == schema.TensorType.FLOAT32]


def _tiny_efficientnet_mobilenet_v4(dtype="float32"):
    """A tiny network of EfficientNet-B0's first block (swish, squeeze-excite with a sigmoid gate)
    and a MobileNet v4 Conv-S UIB block with Conv-S's head (a pre-logits dense layer and its
    BatchNorm), random weights; BatchNorm momentum 0, so that after a train step the eval-mode
    statistics are the trained batch's, as the learned ranges are."""
    import dataclasses

    from flaxnets.models import efficientnet, mobilenet_v4
    from flaxnets.models.blocks import Knobs

    b0, v4 = efficientnet.architecture("b0"), mobilenet_v4.architecture("conv_small")
    arch = dataclasses.replace(
        v4, stages=(dataclasses.replace(b0.stages[0], repeats=1), dataclasses.replace(v4.stages[4], out_channels=16)),
        stem_channels=8, stem_activation="swish", head_channels=16, pre_logits_channels=16, stage_starts=())
    assert arch.pre_logits_norm
    return arch.build(Knobs(num_classes=10, bn_momentum=0.0, dtype=dtype), rngs=nnx.Rngs(0))


def test_litert_export_refuses_a_bfloat16_network(tmp_path):
    """The LiteRT converter takes no bfloat16 graph: one line saying so, nothing written."""
    from flaxnets.errors import FlaxnetsError
    from flaxnets.export.tflite import Preprocessing, export_tflite

    model = _tiny_efficientnet_mobilenet_v4("bfloat16")
    with pytest.raises(FlaxnetsError, match="^LiteRT export takes a float32 network; this one computes in bfloat16"):
        export_tflite(model, tmp_path / "m.tflite", prep=Preprocessing(16, 1.0, "bilinear", (127.5,) * 3, (127.5,) * 3))
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_qat_of_efficientnet_and_mobilenet_v4_layers_exports_whole_graph_int8(tmp_path):
    """EfficientNet's swish and squeeze-excite sigmoid gate and MobileNet v4's BatchNorm after the
    pre-logits dense layer (`_tiny_efficientnet_mobilenet_v4`): a QAT train step reaches the
    weights under them, and the int8 export is builtin int8 ops only (LOGISTIC included, no float
    tensor), one XNNPACK partition, and agrees with the fake-quantized network."""
    import optax

    from flaxnets import quant
    from flaxnets.config import QuantConfig
    from flaxnets.export.tflite import (Preprocessing, export_tflite, operator_names, relative_difference,
                                        xnnpack_partitions)

    config, r = QuantConfig(mode="qat"), 16
    qmodel = quant.quantize_for_training(_tiny_efficientnet_mobilenet_v4(), config, image_size=r)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, r, r, 3)), jnp.float32)
    optimizer = nnx.Optimizer(qmodel, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(m, optimizer, x):
        def loss(m):
            logits = m(x, rngs=nnx.Rngs(dropout=0))
            return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(8)).mean()

        value, grads = nnx.value_and_grad(loss)(m)
        optimizer.update(m, grads)
        return value, grads

    kernel = np.asarray(qmodel.blocks[0].se.reduce.kernel.value)
    loss, grads = step(qmodel, optimizer, x)
    assert np.isfinite(float(loss))
    # The gradient reaches the weights under the squeeze-excite gate and the swish.
    assert float(jnp.abs(grads["blocks"][0]["se"]["reduce"]["kernel"].value).max()) > 0
    assert not np.array_equal(kernel, np.asarray(qmodel.blocks[0].se.reduce.kernel.value))
    qmodel.eval()
    assert not quant.untrained_ranges(qmodel)

    prep = Preprocessing(r, 1.0, "bilinear", (127.5,) * 3, (127.5,) * 3)
    path = export_tflite(qmodel, tmp_path / "qat.tflite", prep=prep, qat=config)
    ops = operator_names(path)
    assert {"LOGISTIC", "MEAN", "MUL", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"} <= set(ops), ops
    assert not [op for op in ops if op.startswith(("CUSTOM", "STABLEHLO")) or op in ("DEQUANTIZE", "QUANTIZE")], ops
    assert not _float_tensors(path)
    assert xnnpack_partitions(path) == (1, True)
    images = np.random.default_rng(1).integers(0, 256, (8, r, r, 3), np.uint8)
    difference, agreement = relative_difference(qmodel, path, images, mean=prep.mean, std=prep.std)
    assert agreement == 1.0 and difference < 0.1, (difference, agreement)
