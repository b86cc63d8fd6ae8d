"""Recipes: every recipe loads, validates, round-trips, and builds its schedule and optimizer."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets.config import Config, apply_overrides
from flaxnets.errors import UsageError
from flaxnets.recipes import list_recipes, load_recipe, recipe_info
from flaxnets.train.optim import build_optimizer
from flaxnets.train.schedules import build_schedule, total_steps

KINDS = {("conv", "kernel"): "conv_kernel", ("dw", "kernel"): "depthwise_kernel", ("bn", "scale"): "bn_scale",
         ("bn", "bias"): "bn_bias", ("head", "kernel"): "dense_kernel", ("head", "bias"): "bias"}
PARAMS = {"conv": {"kernel": jnp.ones((3, 3, 3, 4))}, "dw": {"kernel": jnp.ones((3, 3, 1, 4))},
          "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}, "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
EXPECTED = {"mobilenet_v3_large_tfvision", "mobilenet_v3_large_paper", "mobilenet_v3_small_paper",
            "mobilenet_v3_small_tfvision", "mobilenet_v3_large_mnv4_setup", "mobilenet_v3_large_seed", "digits_demo",
            *(f"efficientnet_b{i}_tpu" for i in range(8)),
            *(f"mobilenet_v4_{v}_tfvision" for v in ("conv_small", "conv_medium", "conv_large",
                                                      "hybrid_medium", "hybrid_large")),
            *(f"efficientnetv2_{v}_automl" for v in ("b0", "b1", "b2", "b3", "s", "m", "l"))}


def test_all_expected_recipes_are_listed():
    assert EXPECTED <= set(list_recipes())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_loads_round_trips_and_builds_optimizer(name):
    config = load_recipe(name)
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    info = recipe_info(name)
    assert info["model"] == config.model.name and info["title"]
    num_train = config.data.num_train_examples or 1437
    schedule = build_schedule(config, num_train)
    lrs = np.asarray(schedule(np.array([0, total_steps(config, num_train) // 2])))
    assert np.all(np.isfinite(lrs)) and lrs[1] > 0
    tx = build_optimizer(config, KINDS, num_train, schedule=schedule)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, PARAMS), tx.init(PARAMS), PARAMS)
    assert all(np.all(np.isfinite(np.asarray(u))) for u in jax.tree.leaves(updates))


def test_recipe_values_match_their_sources():
    large = load_recipe("mobilenet_v3_large_tfvision")
    assert (large.optimizer.name, large.optimizer.eps, large.optimizer.weight_decay) == ("adamw", 1e-7, 0.1)
    assert large.optimizer.weight_decay_exclude == ("bn_scale", "bn_bias")
    assert large.ema.decay is None and large.loss.label_smoothing == 0.1 and large.optimizer.l2 == 0
    assert total_steps(large, 1_281_167) == 218_000  # the yaml's train_steps
    b0 = load_recipe("efficientnet_b0_tpu")
    assert b0.schedule.steps_per_epoch_mode == "real" and b0.optimizer.eps == 1e-3
    assert float(build_schedule(b0, 1_281_167)(3127)) == pytest.approx(0.128 * 0.97**2, rel=1e-6)
    b7 = load_recipe("efficientnet_b7_tpu")
    assert (b7.data.image_size, b7.model.dropout_rate) == (600, 0.5)
    seed = load_recipe("mobilenet_v3_large_seed")
    assert float(build_schedule(seed, 1_281_167)(5 * 312 - 1)) == pytest.approx(
        0.02 * 4096 / 192 * (5 * 312 - 1) / (5 * 312), rel=1e-6)
    assert float(build_schedule(seed, 1_281_167)(5 * 312)) == pytest.approx(
        0.02 * 4096 / 192 * 0.99 ** math.floor(5 * 312 / 936), rel=1e-6)
    assert seed.train.micro_batch_size // seed.model.bn_group_size == 8  # 1024 per step on 8 cores


# Learning rates TF-Vision itself computes for these yamls: the `mobilenet_imagenet` experiment
# overridden with the yaml (tf-models-official 2.20, params_dict.override_params_dict, then
# OptimizerFactory(...).build_learning_rate()), at the steps shown.
TF_VISION_LR = {
    "mobilenet_v3_large_tfvision": {0: 0.0, 1: 2.563778934927541e-06, 780: 0.001999747473746538,
                                    1559: 0.00399693101644516, 1560: 0.003999494947493076,
                                    2000: 0.003999169450253248, 100000: 0.0022586709819734097},
    "mobilenet_v3_small_tfvision": {0: 0.0010000000474974513, 1: 0.001005705213174224, 780: 0.005450000055134296,
                                    1559: 0.009894294664263725, 1560: 0.00989999994635582,
                                    2000: 0.009801000356674194, 100000: 0.0034461254253983498},
}


@pytest.mark.parametrize("name", sorted(TF_VISION_LR))
def test_tf_vision_recipes_run_tf_visions_learning_rates_warmup_included(name):
    # The Large yaml states no warmup, but TF-Vision runs the factory's 1,560-step one.
    schedule = build_schedule(load_recipe(name), 1_281_167)
    for step, expected in TF_VISION_LR[name].items():
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


def test_each_recipe_normalises_as_its_source_does():
    from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD

    for name in ("mobilenet_v3_large_tfvision", "mobilenet_v3_small_tfvision", "mobilenet_v3_large_mnv4_setup",
                 *(f"efficientnet_b{i}_tpu" for i in range(8))):
        data = load_recipe(name).data
        assert (data.mean, data.std) == (IMAGENET_MEAN, IMAGENET_STD), name
    for name in ("mobilenet_v3_large_paper", "mobilenet_v3_small_paper"):
        data = load_recipe(name).data
        assert (data.mean, data.std) == (INCEPTION_MEAN, INCEPTION_STD), name
    assert IMAGENET_MEAN == pytest.approx((123.675, 116.28, 103.53))


def test_paper_recipes_use_every_value_section_6_1_1_states():
    for name in ("mobilenet_v3_large_paper", "mobilenet_v3_small_paper"):
        c = load_recipe(name)
        assert (c.optimizer.name, c.optimizer.momentum, c.optimizer.l2) == ("rmsprop", 0.9, 1e-5)
        assert (c.optimizer.initial_scale, c.optimizer.eps_in_sqrt) == (1.0, True)  # TF1 RMSPropOptimizer
        assert (c.schedule.base_lr, c.schedule.reference_batch, c.train.global_batch_size) == (0.1, 4096, 4096)
        assert (c.schedule.decay_epochs, c.schedule.decay_rate) == (3, 0.99)
        assert (c.model.dropout_rate, c.model.bn_momentum, c.ema.decay) == (0.2, 0.99, 0.9999)
        assert (c.data.crop, c.model.bn_group_size) == ("inception", 128)
        schedule = build_schedule(c, 1_281_167)
        assert float(schedule(1560)) == pytest.approx(0.1 * 0.99, rel=1e-6)  # 1560 steps = 1 decay period
        assert float(schedule(3 * 936)) == pytest.approx(0.1 * 0.99**3, rel=1e-6)


def test_bn_groups_follow_each_source_and_divide_the_forward_pass():
    groups = {"mobilenet_v3_large_tfvision": 128, "mobilenet_v3_small_tfvision": 128,
              "mobilenet_v3_large_mnv4_setup": 128, "mobilenet_v3_large_paper": 128,
              "mobilenet_v3_small_paper": 128, "mobilenet_v3_large_seed": 128,
              **{f"efficientnet_b{i}_tpu": 256 for i in range(8)}, "digits_demo": None}
    for name, group in groups.items():
        config = load_recipe(name)
        assert config.model.bn_group_size == group, name
        # Global BN stays one override away, and a smaller run states its own group.
        assert apply_overrides(config, ["model.bn_group_size=none"]).model.bn_group_size is None
        small = apply_overrides(config, ["train.global_batch_size=64", "train.grad_accum_steps=1",
                                         "model.bn_group_size=16"])
        assert small.train.micro_batch_size % small.model.bn_group_size == 0


def test_mnv4_setup_follows_the_conv_m_yaml():
    c = load_recipe("mobilenet_v3_large_mnv4_setup")
    assert (c.data.image_size, c.model.stochastic_depth_rate, c.optimizer.weight_decay) == (256, 0.075, 0.1)
    assert total_steps(c, 1_281_167) == 156_000


def test_efficientnet_recipes_read_resolution_and_dropout_from_the_model_table():
    from flaxnets.models.efficientnet import SCALING

    for i in range(8):
        c = load_recipe(f"efficientnet_b{i}_tpu")
        _, _, size, dropout = SCALING[f"b{i}"]
        assert (c.data.image_size, c.model.dropout_rate) == (size, dropout)
        assert c.data.eval_crop_fraction == size / (size + 32)


def test_load_recipe_from_files(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(load_recipe("digits_demo").to_json())
    assert load_recipe(str(path)) == load_recipe("digits_demo")
    py = tmp_path / "mine.py"
    py.write_text("from flaxnets.recipes.digits_demo import get_config\n")
    assert load_recipe(str(py)).name == "digits_demo"


def test_unknown_recipe_suggests():
    with pytest.raises(UsageError, match="did you mean 'efficientnet_b0_tpu'"):
        load_recipe("efficientnet_b0_tp")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_demo", "mobilenet_v3_large_tfvision", "efficientnet_b0_tpu"])
def test_recipe_model_builds_and_optimizer_steps(name):
    from flax import nnx

    from flaxnets import models

    config = load_recipe(name)
    model = models.create_model(config.model.name, num_classes=config.model.num_classes, rngs=nnx.Rngs(0),
                                **config.model.overrides())
    import optax

    tx = build_optimizer(config, models.param_kinds(model), 1_281_167)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit  # one compile each: eager NNX ops would compile one program per parameter
    def forward_and_step(params, rest):
        logits = nnx.merge(graphdef, params, rest)(jnp.zeros((1, 32, 32, 3), jnp.float32))
        grads = jax.tree.map(jnp.ones_like, params)
        opt_state, new = tx.init(params), params
        for _ in range(2):  # a warmup may give step 0 a zero learning rate
            updates, opt_state = tx.update(grads, opt_state, new)
            new = optax.apply_updates(new, updates)
        return logits, new

    logits, new_params = forward_and_step(params, rest)
    assert logits.shape == (1, config.model.num_classes) and logits.dtype == jnp.float32
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params))]
    assert all(np.isfinite(moved)) and max(moved) > 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_docstring_command_runs_through_the_cli_parser_and_config(name):
    """The command a recipe's docstring shows parses as `flaxnets train` and its --set keys apply,
    so a user who copies it gets a run, not a usage error."""
    import re
    import shlex

    from flaxnets.cli import build_parser
    from flaxnets.commands.train import load_config
    from flaxnets.recipes import recipe

    doc = recipe(name).doc  # a recipe's module docstring, or its family's Recipe
    found = re.search(r"^\s*(flaxnets (?:train|demo)\b.*?)(?<!\\)$", doc, re.M | re.S)
    assert found, f"{name}: no `flaxnets train` command in the docstring"
    argv = shlex.split(found.group(1).replace("\\\n", " "))[1:]
    args = build_parser().parse_args(argv)
    if args.command == "train":
        assert args.recipe == name
        load_config(args.recipe, args.overrides)


def test_mobilenet_v4_recipes_cite_a_source_for_every_value_they_set():
    """Every key whose value differs from `Config()`'s has a citation (a reference file and
    line), and Conv-S has the yaml's BN constants, AdamW and L2."""
    import importlib

    from flaxnets.config import config_keys

    default = Config()
    for variant in ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"):
        module = importlib.import_module(f"flaxnets.recipes.mobilenet_v4_{variant}_tfvision")
        config = module.get_config()

        def value(c, key):
            for part in key.split("."):
                c = getattr(c, part)
            return c

        changed = {k for k in config_keys() if value(config, k) != value(default, k)} - {"name", "source"}
        assert changed <= set(module.SOURCES), sorted(changed - set(module.SOURCES))
        assert all(":" in v and v.startswith("official/") for v in module.SOURCES.values())
        assert module.PUBLISHED_TOP1 == recipe_info(f"mobilenet_v4_{variant}_tfvision")["published_top1"]
    small = load_recipe("mobilenet_v4_conv_small_tfvision")
    assert (small.model.bn_momentum, small.model.bn_epsilon) == (0.95, 1e-6)
    assert (small.optimizer.b1, small.optimizer.eps, small.optimizer.weight_decay, small.optimizer.l2) == (
        0.6, 1e-6, 0.01, 1e-5)
    assert (small.ema.decay, small.ema.start_step) == (0.9999, 1560)
    assert total_steps(small, 1_281_167) == 3_002_368
    large = load_recipe("mobilenet_v4_conv_large_tfvision")
    assert (large.data.mix_prob, large.data.mixup_alpha, large.data.cutmix_alpha) == (0.2, 0.8, 1.0)
    assert large.model.stochastic_depth_rule == "flat"
    assert total_steps(large, 1_281_167) == 39_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v4_conv_small_tfvision", "mobilenet_v4_hybrid_medium_tfvision"])
def test_mobilenet_v4_recipe_trains_a_few_steps_on_the_digits(name, digits, tmp_path):
    """The recipe as it is (RandAugment, its optimizer, EMA, BN groups, stochastic depth) on
    32x32 digits, batch 16: two optimizer steps, finite losses."""
    from flaxnets.config import apply_overrides
    from flaxnets.train.loop import train_and_evaluate

    config = apply_overrides(load_recipe(name), [
        "model.num_classes=10", "data.image_size=32", "data.num_train_examples=none",
        "train.global_batch_size=16", "model.bn_group_size=8", "train.epochs=0.0225",
        "eval.every_steps=2", "eval.batch_size=120", "log.every_steps=1"])
    train_and_evaluate(config, data_dir=str(digits), workdir=str(tmp_path / "run"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in lines if "train_loss" in r]
    assert 2 <= len(losses) <= 3 and all(np.isfinite(losses))


@pytest.mark.parametrize("variant", ["conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"])
def test_mobilenet_v4_recipe_builds_its_model_and_optimizer(variant):
    """The recipe's model (abstractly) with its overrides, and its optimizer over that model's
    parameter kinds (layer scale included for the hybrids)."""
    from flax import nnx

    from flaxnets import models

    config = load_recipe(f"mobilenet_v4_{variant}_tfvision")
    model = nnx.eval_shape(lambda: models.create_model(
        config.model.name, num_classes=config.model.num_classes, **config.model.overrides()))
    kinds = models.param_kinds(model)
    assert ("layer_scale" in kinds.values()) == variant.startswith("hybrid")
    rates = [c.drop_path_rate for c in model.block_configs]
    assert max(rates) <= config.model.stochastic_depth_rate + 1e-12
    tx = build_optimizer(config, kinds, 1_281_167)
    params = nnx.state(model, nnx.Param)
    state = jax.eval_shape(tx.init, params)
    assert jax.tree.leaves(state)


#: google/automl efficientnetv2/effnetv2_configs.py `efficientnetv2_params` at 6a54c87, typed from
#: the reference: (train_size, eval_size, dropout, randaug, mixup) of each variant.
AUTOML_PARAMS = {"s": (300, 384, 0.2, 10, 0), "m": (384, 480, 0.3, 15, 0.2), "l": (384, 480, 0.4, 20, 0.5),
                 "b0": (192, 224, 0.2, 0, 0), "b1": (192, 240, 0.2, 0, 0), "b2": (208, 260, 0.3, 0, 0),
                 "b3": (240, 300, 0.3, 0, 0)}


@pytest.mark.parametrize("variant", sorted(AUTOML_PARAMS))
def test_efficientnetv2_automl_recipes_stage_as_the_reference(variant):
    """Each automl recipe's progressive stages over its 350 epochs equal main.py's loop run by
    hand on effnetv2_configs.py's row: train_steps = 350 * 1,256,144 // 4096, stage i ends at
    int((i + 1) / 4 * train_steps) at int(128 + (train_size - 128) * (i + 1) / 4) pixels with
    RandAugment linspace(5, ram, 4)[i] and Mixup / CutMix linspace(0, mixup, 4)[i] (B0-B3 use
    AutoAugment: no magnitude staged); evaluation at eval_size."""
    from flaxnets.train.progressive import stage_plan

    train_size, eval_size, dropout, ram, mix = AUTOML_PARAMS[variant]
    config = load_recipe(f"efficientnetv2_{variant}_automl")
    steps = 350 * 1_256_144 // 4096
    assert total_steps(config, config.data.num_train_examples) in (steps, steps + 1)
    plan = stage_plan(config, steps, config.data.image_size)
    assert config.data.image_size == eval_size and config.model.dropout_rate == dropout
    assert [s.end_step for s in plan] == [int((i + 1) / 4 * steps) for i in range(4)]
    assert [s.image_size for s in plan] == [int(128 + (train_size - 128) * (i + 1) / 4) for i in range(4)]
    if variant.startswith("b"):
        assert config.data.augment == "autoaugment" and config.progressive.randaugment_magnitude is None
    else:
        assert config.data.augment == "randaugment"
        np.testing.assert_allclose([s.randaugment_magnitude for s in plan], np.linspace(5, ram, 4))
    np.testing.assert_allclose([s.mixup_alpha for s in plan], np.linspace(0, mix, 4))
    np.testing.assert_allclose([s.cutmix_alpha for s in plan], np.linspace(0, mix, 4))
    assert {s.dropout_rate for s in plan} == {dropout}  # main.py deletes its dropout list
    assert recipe_info(f"efficientnetv2_{variant}_automl")["published_top1"] == {
        "s": 83.9, "m": 85.2, "l": 85.7, "b0": 78.7, "b1": 79.8, "b2": 80.5, "b3": 82.1}[variant]
