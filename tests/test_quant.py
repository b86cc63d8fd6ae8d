"""Quantization-aware training (`quant.mode=qat`, `flaxnets.quant`): the keys are checked, the
learned activation ranges are part of the train state (an interrupted run resumes to exactly the
uninterrupted run's weights and ranges), and a digits MobileNet v3 Small trained with QAT exports
to an int8 LiteRT model of builtin int8 ops, in one XNNPACK partition, whose held-out top-1 is
within 0.5 points of the fake-quantized JAX network's."""

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
                 "--check"]) == 0
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
