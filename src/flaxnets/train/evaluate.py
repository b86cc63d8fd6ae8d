"""Evaluation over a whole validation set: top-1 / top-5 of the raw and EMA weights.

The eval iterator yields every example exactly once across processes, padding the last batches
with `mask` False; the counts below are sums over the mask, so `eval_count` is the number of
validation examples evaluated (pitfall 4: no example dropped, none counted twice).
"""

from __future__ import annotations

import jax
import numpy as np

from flaxnets.train import parallel


def evaluate(eval_step, variable_sets: dict, batches, mesh) -> dict:
    """One pass over `batches`, scoring every set of weights on each batch.

    `variable_sets` maps a name to (params, batch_stats, other); `batches` yields this process's
    share of each batch (numpy, with "mask"). Returns name -> {"top1", "top5" (fractions),
    "count" (examples scored)}.
    """
    totals = {name: None for name in variable_sets}
    for batch in batches:
        batch = parallel.shard_batch({k: batch[k] for k in ("image", "label", "mask")}, mesh)
        for name, variables in variable_sets.items():
            counts = eval_step(*variables, batch)
            previous = totals[name]
            totals[name] = counts if previous is None else jax.tree.map(lambda a, b: a + b, previous, counts)
    results = {}
    for name, total in totals.items():
        total = {k: int(np.asarray(jax.device_get(v))) for k, v in (total or {}).items()}
        count = total.get("count", 0)
        results[name] = {
            "top1": total["top1"] / count if count else float("nan"),
            "top5": total["top5"] / count if count else float("nan"),
            "count": count,
        }
    return results


def evaluate_state(eval_step, state, batches, mesh) -> dict:
    """eval_top1 / eval_top5 / eval_count for the raw weights, plus eval_ema_top1 / eval_ema_top5
    when the state has EMA weights, from one pass over `batches`."""
    sets = {"raw": state.eval_variables(ema=False)}
    if state.ema_params is not None:
        sets["ema"] = state.eval_variables(ema=True)
    results = evaluate(eval_step, sets, batches, mesh)
    raw = results["raw"]
    out = {"eval_top1": raw["top1"], "eval_top5": raw["top5"], "eval_count": raw["count"]}
    if "ema" in results:
        out.update({"eval_ema_top1": results["ema"]["top1"], "eval_ema_top5": results["ema"]["top5"]})
    return out


def evaluate_workdir(workdir, data_dir, *, checkpoint: str = "latest", batch_size: int | None = None,
                     split: str = "val") -> dict:
    """Evaluate the raw (and EMA) weights saved in `workdir` on `data_dir`'s `split`.

    `checkpoint`: "latest", "best" or a step number. Preprocessing is the run's own (its
    config.json). Returns eval_top1 / eval_top5 / eval_count (+ EMA figures) and "step".
    """
    import json
    from pathlib import Path

    import jax.numpy as jnp
    from flax import nnx

    from flaxnets import data as data_lib
    from flaxnets.config import Config
    from flaxnets.errors import FlaxnetsError
    from flaxnets.models import create_model, param_kinds
    from flaxnets.train.checkpoint import Checkpointer
    from flaxnets.train.loop import CONFIG_FILE, resolve_preprocessing
    from flaxnets.train.optim import build_optimizer
    from flaxnets.train.state import create_train_state
    from flaxnets.train.step import make_eval_step

    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not config_path.exists():
        raise FlaxnetsError(f"--workdir {str(workdir)!r} holds no {CONFIG_FILE}; expected a `flaxnets train` work directory")
    config = Config.from_dict(json.loads(config_path.read_text()))
    ckpt = Checkpointer(str(workdir), keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best,
                        async_save=False, read_only=True)
    try:
        if checkpoint == "latest":
            step = ckpt.latest_step()
        elif checkpoint == "best":
            step = ckpt.best_step()
        elif str(checkpoint).isdigit():
            step = int(checkpoint) if int(checkpoint) in ckpt.all_steps() else None
        else:
            raise FlaxnetsError(f"--checkpoint {checkpoint!r}: expected latest, best or a saved step number")
        if step is None:
            raise FlaxnetsError(f"no checkpoint {checkpoint!r} in {workdir / 'checkpoints'} (saved: {ckpt.all_steps() or 'none'})")

        mesh = parallel.make_mesh()
        model_kwargs = config.model.overrides()
        if "dtype" in model_kwargs:
            model_kwargs["dtype"] = jnp.dtype(model_kwargs["dtype"])
        num_train = config.data.num_train_examples or 1
        model = nnx.eval_shape(lambda: create_model(config.model.name, num_classes=config.model.num_classes,
                                                    rngs=nnx.Rngs(config.seed), **model_kwargs))
        # Only the optimizer state's structure is needed to restore; a real schedule would need
        # the training-set size, which the config often leaves to the data (None).
        tx = build_optimizer(config, param_kinds(model), num_train, lambda step: jnp.zeros((), jnp.float32))
        holder = {}

        def abstract_state():
            holder["graphdef"], state = create_train_state(
                model, tx, seed=config.seed, ema=config.ema.decay is not None,
                ema_batch_stats=config.ema.include_batch_stats)
            return state

        abstract = jax.eval_shape(abstract_state)
        replicated = parallel.replicated(mesh)
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
        state, _ = ckpt.restore(step, abstract, with_data=False)
    finally:
        ckpt.close()

    prep = resolve_preprocessing(config)
    eval_batch = batch_size or config.eval.batch_size
    eval_batch = -(-eval_batch // mesh.devices.size) * mesh.devices.size
    loader = data_lib.eval_loader(
        data_dir, image_size=prep["image_size"], crop_fraction=prep["crop_fraction"],
        interpolation=prep["interpolation"], global_batch_size=eval_batch,
        process_index=jax.process_index(), process_count=jax.process_count(),
        device_count=jax.local_device_count(), split=split)
    eval_step = make_eval_step(holder["graphdef"], mean=prep["mean"], std=prep["std"], mesh=mesh)
    result = evaluate_state(eval_step, state, iter(loader), mesh)
    result["step"] = int(step)
    result["eval_skipped"] = loader.coverage()["num_skipped"]
    return result
