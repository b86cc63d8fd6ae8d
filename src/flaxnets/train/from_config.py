"""What a Config resolves to, in one place each: the model it builds, the preprocessing it uses
(its own values, else the model's defaults) and the train step it runs. Training, evaluation,
`restore`, predict, export and `flaxnets benchmark model` all come here, so a run is rebuilt
exactly as it was trained and the benchmark times the step training runs."""

from __future__ import annotations

import functools

import jax.numpy as jnp
from flax import nnx

from flaxnets import models, quant
from flaxnets.config import Config
from flaxnets.data import augment, augment_device, mix
from flaxnets.train.losses import cross_entropy_loss
from flaxnets.train.step import make_train_step


def resolve_preprocessing(config: Config) -> dict:
    """Resolution, crop flavour, eval crop fraction, interpolation and mean/std: the config's, else
    the model's. The one reader of those `data.*` keys: the loaders (`flaxnets.data.loader.
    train_loader_from_config` / `eval_loader_from_config`), the train step, predict and export
    take this dict. `crop` is the run's `data.crop`: its reference's crop and resize convention
    train the run, and its centre-crop arithmetic evaluates it. `interpolation` is the eval
    resize (else the model's); `train_interpolation` the training crop's resize, `data.interpolation`
    as given (None: the crop flavour's own)."""
    spec = models.get_spec(config.model.name)
    d = config.data
    return {
        "image_size": d.image_size or spec.resolution,
        "crop": d.crop,
        "crop_fraction": d.eval_crop_fraction or spec.crop_fraction,
        "interpolation": d.interpolation or spec.interpolation,
        "train_interpolation": d.interpolation,
        "mean": tuple(d.mean or spec.mean),
        "std": tuple(d.std or spec.std),
    }


def create_model_from_config(config: Config) -> nnx.Module:
    """The network of `config.model` (name, classes, overrides), initialised from `config.seed`,
    with int8 fake quantization when `config.quant.mode` is qat (`flaxnets.quant`).

    `flaxnets.models.create_model` is looked up at call time, so tests can swap in a tiny one.
    """
    overrides = config.model.overrides()
    if "dtype" in overrides:
        overrides["dtype"] = jnp.dtype(overrides["dtype"])
    model = models.create_model(config.model.name, num_classes=config.model.num_classes,
                                rngs=nnx.Rngs(config.seed), **overrides)
    if config.quant.mode == "qat":
        model = quant.quantize_for_training(model, config.quant,
                                            image_size=resolve_preprocessing(config)["image_size"])
    return model


def _loss_fn(label_smoothing: float, logits, labels):
    return cross_entropy_loss(logits, labels, label_smoothing).mean()


def mix_from_config(config: Config):
    """Batch-level Mixup / CutMix on the device as `data.*` asks (alphas, the probability that a
    batch is mixed, CutMix's share), or None when both alphas are 0."""
    d = config.data
    if not d.mixup_alpha and not d.cutmix_alpha:
        return None
    return functools.partial(mix.mixup_or_cutmix, mixup_alpha=d.mixup_alpha, cutmix_alpha=d.cutmix_alpha,
                             prob=d.mix_prob, switch_prob=d.mix_switch_prob)


def device_augment_from_config(config: Config, *, mean, std):
    """`augment_fn(images, batch)` applying on the device the draws `augment_from_config` makes
    the loader put in each batch with `data.augment_on: device`; None when augmentation runs on
    the host or there is none. RandomErasing's noise uses `mean` / `std` (0-255 scale)."""
    if not isinstance(augment.augment_from_config(config.data, mean=mean, std=std), augment.DeviceDraws):
        return None
    return functools.partial(augment_device.augment_batch, noise_table=augment.erasing_noise_table(mean, std))


def train_step_from_config(config: Config, graphdef, tx, *, schedule, mean, std, mesh):
    """`make_train_step` with the config's loss (label smoothing), gradient accumulation, EMA,
    Mixup / CutMix, device augmentation and `schedule` as the logged learning rate."""
    return make_train_step(
        graphdef, tx, loss_fn=functools.partial(_loss_fn, config.loss.label_smoothing), mean=mean, std=std,
        grad_accum_steps=config.train.grad_accum_steps, ema_decay=config.ema.decay,
        ema_dynamic_decay=config.ema.dynamic_decay, ema_start_step=config.ema.start_step,
        learning_rate_fn=schedule, mix_fn=mix_from_config(config),
        num_classes=config.model.num_classes,
        augment_fn=device_augment_from_config(config, mean=mean, std=std), mesh=mesh)
