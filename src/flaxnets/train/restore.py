"""A `flaxnets train` work directory read back: its config, a saved train state, and the model
with the raw or EMA weights. Shared by `flaxnets eval/predict/export --workdir`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models import param_kinds
from flaxnets.train import parallel
from flaxnets.train.checkpoint import Checkpointer
from flaxnets.train.from_config import create_model_from_config, resolve_preprocessing
from flaxnets.train.optim import build_optimizer
from flaxnets.train.state import create_train_state, merge_model, split_model
from flaxnets.train.workdir import CHECKPOINT_DIR, read_class_names, read_config


@dataclasses.dataclass
class SavedRun:
    """One checkpoint of a run: `state` is the restored `TrainState` (replicated over `mesh`)."""

    workdir: Path
    config: Any
    step: int
    graphdef: Any
    state: Any
    mesh: Any
    #: The training data's class names in label order, when the run recorded them.
    class_names: list[str] | None

    @property
    def has_ema(self) -> bool:
        """True when the run kept an exponential moving average of the weights."""
        return self.state.ema_params is not None

    def preprocessing(self) -> dict:
        """The run's preprocessing (`resolve_preprocessing`): image_size, crop, crop_fraction, interpolation,
        train_interpolation, mean, std."""
        return resolve_preprocessing(self.config)

    def model(self, ema: bool | None = None, *, dtype: str | None = None):
        """The network in eval mode with the EMA weights (`ema` None: when the run kept them)
        or the raw ones, computing in `dtype` (None: the run's `model.dtype`).

        The parameters and BatchNorm statistics are float32 whatever the run's compute dtype
        (`ModelConfig.dtype`), so a bfloat16 run becomes a float32 network by rebuilding only
        the graph (the dtype is a static attribute of each layer) around the same weights."""
        if ema is None:
            ema = self.has_ema
        if ema and not self.has_ema:
            raise FlaxnetsError(f"{self.workdir} has no EMA weights (the run's ema.decay is none); drop --ema")
        graphdef = self.graphdef
        if dtype is not None and dtype != self.config.model.dtype:
            config = dataclasses.replace(self.config, model=dataclasses.replace(self.config.model, dtype=dtype))
            graphdef = split_model(nnx.eval_shape(lambda: create_model_from_config(config)))[0]
        return merge_model(graphdef, *self.state.eval_variables(ema=ema), train=False)


def _select_step(ckpt, checkpoint, workdir: Path) -> int:
    if checkpoint == "latest":
        step = ckpt.latest_step()
    elif checkpoint == "best":
        step = ckpt.best_step()
    elif str(checkpoint).isdigit():
        step = int(checkpoint) if int(checkpoint) in ckpt.all_steps() else None
    else:
        raise FlaxnetsError(f"--checkpoint {checkpoint!r}: expected latest, best or a saved step number")
    if step is None:
        raise FlaxnetsError(f"no checkpoint {checkpoint!r} in {workdir / CHECKPOINT_DIR} (saved: {ckpt.all_steps() or 'none'})")
    return int(step)


def restore_run(workdir, checkpoint: str = "latest", mesh=None) -> SavedRun:
    """Read `workdir`'s config.json and restore checkpoint `checkpoint` ("latest", "best" or a
    step number), replicated over `mesh` (default: every device). The model is rebuilt from the
    config (name, num_classes, overrides) without initialising any weights."""
    workdir = Path(workdir)
    config = read_config(workdir)
    class_names = read_class_names(workdir, config.model.num_classes)

    mesh = parallel.make_mesh() if mesh is None else mesh
    ckpt = Checkpointer(str(workdir), keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best,
                        async_save=False, read_only=True)
    try:
        step = _select_step(ckpt, checkpoint, workdir)
        model = nnx.eval_shape(lambda: create_model_from_config(config))
        # Only the optimizer state's structure is needed to restore; a real schedule would need
        # the training-set size, which the config often leaves to the data (None).
        num_train = config.data.num_train_examples or 1
        tx = build_optimizer(config, param_kinds(model), num_train, lambda step: jnp.zeros((), jnp.float32))
        holder = {}
        # The abstract model's arrays go in as arguments: captured as constants, the EMA copy
        # (jnp.array of a ShapeDtypeStruct) would fail.
        model_graphdef, model_state = nnx.split(model)

        def abstract_state(model_state):
            holder["graphdef"], state = create_train_state(
                nnx.merge(model_graphdef, model_state), tx, seed=config.seed, ema=config.ema.decay is not None,
                ema_batch_stats=config.ema.include_batch_stats)
            return state

        abstract = jax.eval_shape(abstract_state, model_state)
        replicated = parallel.replicated(mesh)
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
        try:
            state, _ = ckpt.restore(step, abstract, with_data=False)
        except (ValueError, KeyError, TypeError) as e:
            # Orbax raises these when the saved tree differs from the one this config builds, e.g. a
            # run saved before the optimizer registry (its optimizer state had another layout).
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise FlaxnetsError(
                f"checkpoint {step} in {workdir / CHECKPOINT_DIR} does not match the train state its "
                f"config.json builds with this flaxnets (saved by another version, or damaged): {first}") from e
    finally:
        ckpt.close()
    return SavedRun(workdir=workdir, config=config, step=step, graphdef=holder["graphdef"], state=state,
                    mesh=mesh, class_names=class_names)


def load_run_weights(model, workdir, *, checkpoint: str = "latest") -> str:
    """Copy the weights and BatchNorm statistics of a `flaxnets train` run into `model` (a fresh
    run's network, e.g. the same model with `quant.mode=qat` for quantization-aware fine-tuning),
    by parameter path: the EMA weights when the run kept them, else the raw ones.

    The classifier is left as `model` initialised it when the two class counts differ (its
    arrays' shapes then differ); any other difference of paths or shapes is one line naming the
    first ones, as the networks are then not the same architecture. Returns what was loaded, for
    the start summary.
    """
    run = restore_run(workdir, checkpoint)
    source = run.model()
    kinds = (nnx.Param, nnx.BatchStat)
    src = {path: var for path, var in nnx.to_flat_state(nnx.state(source, kinds))}
    dst = nnx.state(model, kinds)
    flat = dict(nnx.to_flat_state(dst))
    name = lambda path: "/".join(map(str, path))  # noqa: E731
    missing = [name(p) for p in flat if p not in src]
    unexpected = [name(p) for p in src if p not in flat]
    if missing or unexpected:
        raise FlaxnetsError(
            f"--init-from {str(workdir)!r}: its {run.config.model.name} is not this run's {model.__class__.__name__} "
            f"(missing here: {', '.join(unexpected[:3]) or 'none'}; not in the run: {', '.join(missing[:3]) or 'none'})")
    old_classes = run.config.model.num_classes
    kept = []
    for path, var in flat.items():
        value = src[path].value
        if tuple(value.shape) != tuple(var.value.shape):
            if value.shape and value.shape[-1] == old_classes and var.value.shape[-1] != old_classes:
                kept.append(int(var.value.shape[-1]))  # the classifier of another class count
                continue
            raise FlaxnetsError(f"--init-from {str(workdir)!r}: {name(path)} has shape {tuple(value.shape)} "
                                f"there and {tuple(var.value.shape)} here")
        var.value = jnp.asarray(value, var.value.dtype)
    nnx.update(model, nnx.from_flat_state(flat))
    which = "EMA" if run.has_ema else "raw"
    return (f"the {which} weights of {workdir} at step {run.step}"
            + (f", with a new classifier ({old_classes} -> {kept[0]} classes)" if kept else ""))
