"""Config: dotted overrides with type checking and suggestions, JSON round trip, validation."""

import json

import pytest

from flaxnets.config import Config, ModelConfig, OptimizerConfig, apply_overrides, config_keys
from flaxnets.errors import UsageError


def test_overrides_parse_each_field_type():
    c = apply_overrides(
        Config(),
        [
            "optimizer.weight_decay=0.05",
            "train.global_batch_size=1024",
            "train.grad_accum_steps=4",
            "optimizer.name=sgd",
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
        ("optimizer.name=adam", r"optimizer\.name='adam': expected 'adamw' \| 'rmsprop' \| 'sgd'"),
        ("optimizer.epsilon_hat=maybe", r"optimizer\.epsilon_hat='maybe': expected bool"),
        ("schedule.decay_rate=0.9", r"'schedule\.decay_rate': schedule 'cosine' takes decay_epochs, alpha "
                                    r"\(decay_rate is an argument of exponential: set schedule\.name first\)"),
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
    # dtype and bn_moving_variance have no None: always handed over.
    assert m.overrides() == {"bn_momentum": 0.99, "dtype": "bfloat16", "bn_moving_variance": "biased"}


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


def test_optimizer_arguments_are_the_chosen_optimizers():
    c = apply_overrides(Config(), ["optimizer.name=rmsprop", "optimizer.momentum=0.9", "optimizer.eps=1e-3",
                                   "optimizer.initial_scale=1"])
    assert c.optimizer.args == {"decay": 0.9, "eps": 1e-3, "initial_scale": 1.0, "eps_in_sqrt": True,
                                "centered": False, "momentum": 0.9, "nesterov": False}
    assert c.optimizer.momentum == 0.9 and isinstance(c.optimizer.initial_scale, float)
    # Another optimizer starts from its own defaults; the same name keeps the arguments.
    assert apply_overrides(c, ["optimizer.name=sgd"]).optimizer.args == {"momentum": None, "nesterov": False}
    assert apply_overrides(c, ["optimizer.name=rmsprop"]) == c
    with pytest.raises(UsageError, match=r"^unknown config key 'optimizer\.b1': optimizer 'rmsprop' takes decay, eps, "
                                         r"initial_scale, eps_in_sqrt, centered, momentum, nesterov "
                                         r"\(b1 is an argument of adamw: set optimizer\.name first\)$"):
        apply_overrides(c, ["optimizer.b1=0.9"])
    with pytest.raises(UsageError, match=r"optimizer\.momentm': .*did you mean 'optimizer\.momentum'"):
        apply_overrides(c, ["optimizer.momentm=0.9"])
    with pytest.raises(UsageError, match=r"optimizer\.momentum='fast': expected float or none"):
        apply_overrides(c, ["optimizer.momentum=fast"])
    with pytest.raises(UsageError, match=r"optimizer\.decay='0\.9': expected float"):
        OptimizerConfig(name="rmsprop", decay="0.9")
    with pytest.raises(UsageError, match=r"'optimizer\.rmsprop_eps'.*did you mean 'optimizer\.eps'"):
        OptimizerConfig(name="rmsprop", rmsprop_eps=1e-3)


def test_config_json_of_the_flat_layout_before_issue_13_still_loads():
    """Work directories written before the optimizer registry hold every optimizer's arguments as
    flat keys; they load as today's config, the unused arguments dropped."""
    from flaxnets.recipes import load_recipe

    recipe = load_recipe("efficientnet_b0_tpu")
    old = recipe.to_dict()
    old["optimizer"] = {"name": "rmsprop_tf", "b1": 0.9, "b2": 0.999, "eps": 1e-8, "adam_epsilon_hat": False,
                        "rmsprop_decay": 0.9, "rmsprop_momentum": 0.9, "rmsprop_eps": 0.001,
                        "rmsprop_initial_accumulator": 1.0, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                        "weight_decay_exclude": ["bn_scale", "bn_bias"], "l2": 1e-05,
                        "l2_exclude": ["bn_scale", "bn_bias"], "grad_clip_norm": None}
    old["schedule"] = {"name": "exponential", "base_lr": 0.016, "reference_batch": 256, "warmup_epochs": 5,
                       "warmup_start_lr": 0.0, "warmup_target": "peak", "decay_epochs": 2.4, "decay_rate": 0.97,
                       "staircase": True, "alpha": 0.0, "steps_per_epoch_mode": "real"}
    assert Config.from_dict(json.loads(json.dumps(old))) == recipe
    adamw = dict(old["optimizer"], name="adamw", eps=1e-7, adam_epsilon_hat=True, weight_decay=0.1)
    loaded = Config.from_dict({"optimizer": adamw}).optimizer
    assert loaded == OptimizerConfig(name="adamw", eps=1e-7, epsilon_hat=True, weight_decay=0.1, l2=1e-5)


def test_keys_reference_documents_every_optimizer_and_schedule(capsys):
    from flaxnets.cli import main
    from flaxnets.config import describe_choices
    from flaxnets.optimizers import OPTIMIZERS, SCHEDULES

    choices = {(c.section, c.name): c for c in describe_choices()}
    assert set(choices) == {("optimizer", n) for n in OPTIMIZERS} | {("schedule", n) for n in SCHEDULES}
    momentum = {d.key: d for d in choices["optimizer", "rmsprop"].args}["optimizer.momentum"]
    assert (momentum.values, momentum.default) == ("float or none", "none") and momentum.meaning
    assert main(["recipes", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "\noptimizer rmsprop: RMSProp (optax.rmsprop)" in out
    assert "\n    optimizer.initial_scale = 0.0  (float)\n" in out
    assert "\nschedule exponential: " in out and "\n    schedule.decay_rate = 0.97  (float)\n" in out
