"""Config: dotted overrides with type checking and suggestions, JSON round trip, validation."""

import json

import pytest

from flaxnets.config import Config, ModelConfig, apply_overrides, config_keys
from flaxnets.errors import UsageError


def test_overrides_parse_each_field_type():
    c = apply_overrides(
        Config(),
        [
            "optimizer.weight_decay=0.05",
            "train.global_batch_size=1024",
            "train.grad_accum_steps=4",
            "optimizer.nesterov=true",
            "model.dropout_rate=0.3",
            "model.kernel_init=tf_tpu",
            "ema.decay=0.9999",
            "data.mean=127.5,127.5,127.5",
            "optimizer.weight_decay_exclude=bn_scale,bn_bias,bias",
            "data.randaugment_exclude_ops=[Cutout]",
            "schedule.reference_batch=none",
            "optimizer.grad_clip_norm=1e0",
        ],
    )
    assert c.optimizer.weight_decay == 0.05 and isinstance(c.optimizer.weight_decay, float)
    assert c.train.global_batch_size == 1024 and c.train.micro_batch_size == 256
    assert c.optimizer.nesterov is True
    assert c.model.dropout_rate == 0.3
    assert c.model.kernel_init == "tf_tpu"
    assert c.ema.decay == 0.9999
    assert c.data.mean == (127.5, 127.5, 127.5)
    assert c.optimizer.weight_decay_exclude == ("bn_scale", "bn_bias", "bias")
    assert c.data.randaugment_exclude_ops == ("Cutout",)
    assert c.schedule.reference_batch is None
    assert c.optimizer.grad_clip_norm == 1.0


def test_overrides_return_a_copy():
    base = Config()
    new = apply_overrides(base, ["seed=7"])
    assert base.seed == 42 and new.seed == 7


def test_unknown_key_suggests_closest():
    with pytest.raises(UsageError, match=r"optimizer\.weigth_decay.*did you mean 'optimizer\.weight_decay'"):
        apply_overrides(Config(), ["optimizer.weigth_decay=0.1"])
    with pytest.raises(UsageError, match=r"did you mean 'loss\.label_smoothing'"):
        apply_overrides(Config(), ["label_smoothing=0.1"])


@pytest.mark.parametrize(
    "item, pattern",
    [
        ("train.global_batch_size=1.5", r"train\.global_batch_size='1\.5': expected int"),
        ("optimizer.name=adam", r"optimizer\.name='adam': expected 'adamw' \| 'rmsprop_tf' \| 'sgd'"),
        ("optimizer.nesterov=maybe", r"expected bool"),
        ("loss.label_smoothing=none", r"loss\.label_smoothing='none': expected float"),
        ("data.mean=1,2", r"data\.mean"),
        ("optimizer.weight_decay_exclude=bn_scale,batchnorm", r"weight_decay_exclude"),
        ("optimizer", r"expected KEY=VALUE"),
        ("optimizer=1", r"section"),
        ("train.grad_accum_steps=3", r"divisor"),
        ("loss.label_smoothing=1.0", r"\[0, 1\)"),
    ],
)
def test_bad_values_raise_usage_error(item, pattern):
    with pytest.raises(UsageError, match=pattern):
        apply_overrides(Config(), [item])


def test_json_round_trip_preserves_types():
    c = apply_overrides(Config(), ["data.mean=1,2,3", "optimizer.l2_exclude=bn_scale", "ema.decay=0.99"])
    text = json.dumps(c.to_dict())
    back = Config.from_dict(json.loads(text))
    assert back == c
    assert isinstance(back.data.mean, tuple)
    assert Config.from_json(c.to_json()) == c


def test_from_dict_rejects_unknown_and_mistyped():
    d = Config().to_dict()
    d["optimizer"]["weight_decai"] = 0.1
    with pytest.raises(UsageError, match="optimizer.weight_decay"):
        Config.from_dict(d)
    d = Config().to_dict()
    d["train"]["epochs"] = "ten"
    with pytest.raises(UsageError, match="train.epochs"):
        Config.from_dict(d)


def test_model_overrides_omit_defaults():
    m = ModelConfig(name="efficientnet_b0", bn_momentum=0.99, dtype="bfloat16")
    assert m.overrides() == {"bn_momentum": 0.99, "dtype": "bfloat16"}


def test_config_keys_cover_sections():
    keys = config_keys()
    for key in ("model.bn_group_size", "schedule.steps_per_epoch_mode", "ema.include_batch_stats",
                "checkpoint.keep_best", "log.every_steps", "seed"):
        assert key in keys


def test_every_key_has_a_meaning_and_a_default_set_accepts():
    from flaxnets.config import Config, apply_overrides, config_keys, describe_keys

    docs = describe_keys()
    assert [d.key for d in docs] == config_keys()
    for d in docs:
        assert d.meaning, f"{d.key} has no #: comment"
        # The default as printed is valid --set input and gives the default back.
        if d.key not in ("name", "source", "notes"):
            assert apply_overrides(Config(), [f"{d.key}={d.default}"]) == Config(), d.key


def test_keys_reference_shows_a_recipes_values(capsys):
    from flaxnets.cli import main

    from flaxnets.recipes import load_recipe

    recipe = load_recipe("mobilenet_v3_large_tfvision")
    assert main(["recipes", "--keys", "--show", "mobilenet_v3_large_tfvision"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model.name = mobilenet_v3_large  (str)\n    Registry name")
    assert f"\ntrain.global_batch_size = {recipe.train.global_batch_size}  (int)\n" in out
    assert recipe.train.global_batch_size != 256  # not the default
    assert main(["recipes", "--markdown"]) == 2
    assert "--markdown goes with --keys" in capsys.readouterr().err


def test_docs_config_page_is_current():
    from pathlib import Path

    from flaxnets.commands.recipes import keys_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"
    assert page.read_text() == keys_markdown(), \
        "stale: run flaxnets recipes --keys --markdown > docs/CONFIG.md"
