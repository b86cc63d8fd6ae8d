"""`flaxnets benchmark model`: the timed step runs and reports what it promises."""

import json

import jax

import pytest

from flaxnets.cli import main
from flaxnets.errors import UsageError
from flaxnets.train.benchmark import benchmark_model, reference_recipe as bench_reference

KEYS = {"images_per_second", "step_time_s", "compile_time_s", "peak_memory_bytes",
        "peak_memory_note", "devices", "backend", "parameters", "batch", "resolution", "mode", "dtype"}


TINY = ["benchmark", "model", "mobilenet_v3_small", "--batch", "4", "--resolution", "32",
        "--dtype", "float32"]


@pytest.mark.slow
def test_train_json_keys_and_values(capsys, monkeypatch):
    # The timed step is the trainer's own, built from the model's reference recipe.
    import flaxnets.train.benchmark as bench
    from flaxnets.recipes import load_recipe

    built = []
    original = bench.train_step_from_config

    def recording(config, *args, **kwargs):
        built.append(config)
        return original(config, *args, **kwargs)

    monkeypatch.setattr(bench, "train_step_from_config", recording)
    assert main(TINY + ["--mode", "train", "--steps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    recipe = load_recipe("mobilenet_v3_small_tfvision")
    assert result["recipe"] == "mobilenet_v3_small_tfvision" and len(built) == 1
    assert (built[0].optimizer, built[0].ema, built[0].loss) == (recipe.optimizer, recipe.ema, recipe.loss)
    # The recipe's per-replica BatchNorm (128 examples) at this 4-example batch: one replica's share.
    assert recipe.model.bn_group_size == 128 and built[0].model.bn_group_size == 4 // len(jax.devices())
    assert built[0].train.global_batch_size == 4
    assert KEYS <= set(result)
    assert result["mode"] == "train" and result["batch"] == 4 and result["resolution"] == 32
    assert result["devices"] == 4  # the batch of 4 was sharded over conftest's 4 CPU devices
    assert result["backend"] == "cpu"
    assert result["conv_impl"] == "lax"  # the suite pins FLAXNETS_CONV_IMPL=lax (tests/conftest.py)
    assert result["parameters"] == 2_542_856  # RECIPES.md's MobileNet v3 Small figure
    assert result["images_per_second"] > 0 and result["compile_time_s"] > 0
    assert result["step_time_s"] == pytest.approx(4 / result["images_per_second"])
    # The CPU backend keeps no memory statistics: None, and the note says so.
    assert result["peak_memory_bytes"] is None and "cpu" in result["peak_memory_note"]


@pytest.mark.slow
def test_infer_table_output(capsys):
    assert main(TINY + ["--mode", "infer", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "infer / float32" in out and "4 x 32px" in out and "images/s" in out
    assert "convolutions" in out


def test_reference_recipe_of_a_model():
    assert bench_reference("mobilenet_v3_large") == "mobilenet_v3_large_tfvision"
    assert bench_reference("efficientnet_b0") == "efficientnet_b0_tpu"
    with pytest.raises(UsageError, match=r"no bundled recipe trains mobilenet_v2; give --recipe NAME"):
        bench_reference("mobilenet_v2")


@pytest.mark.parametrize("bad, match", [
    (dict(batch=6), r"--batch 6: expected a positive multiple of the device count 4"),
    (dict(mode="eval"), r"--mode 'eval'"),
    (dict(dtype="float16"), r"--dtype 'float16'"),
    (dict(steps=0), r"--steps 0"),
    (dict(resolution=4), r"--resolution 4 is too small; expected at least 8"),
    (dict(name="mobilenet_v3_smal"),
     r"unknown model 'mobilenet_v3_smal' \(did you mean 'mobilenet_v3_small'\?\)"),
    # Nothing adapts a benchmark's recipe: a group larger than the batch is refused at once.
    (dict(overrides=["model.bn_group_size=8"]), r"model.bn_group_size=8: expected a positive divisor of the 4 examples"),
])
def test_bad_settings_are_usage_errors(bad, match):
    settings = dict(name="mobilenet_v3_small", batch=4, resolution=32, mode="train", dtype="float32", steps=2)
    with pytest.raises(UsageError, match=match):
        benchmark_model(**{**settings, **bad})
