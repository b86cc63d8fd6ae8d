"""Evaluation over a whole validation set: top-1 / top-5 of the raw and EMA weights.

The eval iterator yields every example exactly once across processes, padding the last batches
with `mask` False; the counts below are sums over the mask, so `eval_count` is the number of
validation examples evaluated (pitfall 4: no example dropped, none counted twice).
"""

from __future__ import annotations

import jax
import numpy as np

from flaxnets import data as data_lib
from flaxnets.data.sources import match_classes, split_folder
from flaxnets.train import parallel
from flaxnets.train.restore import restore_run
from flaxnets.train.state import split_model
from flaxnets.train.step import make_eval_step
from flaxnets.train.workdir import read_class_names, read_config


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
            counts = {k: v for k, v in eval_step(*variables, batch).items() if k != "logits"}
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


def eval_batch_size(requested: int, num_devices: int) -> int:
    """`requested` rounded up to a multiple of the device count: padding rows are masked out,
    so an evaluation batch may grow where a training batch must divide exactly."""
    return -(-requested // num_devices) * num_devices


def model_evaluator(model, *, mean, std, mesh):
    """(eval_step, variables) for an nnx `model`: the shared compiled eval step and the
    model's (params, batch_stats, other) replicated over `mesh`."""
    graphdef, params, batch_stats, other = split_model(model)
    variables = parallel.replicate(jax.device_get((params, batch_stats, other)), mesh)
    return make_eval_step(graphdef, mean=mean, std=std, mesh=mesh), variables


def predict_logits(eval_step, variables, images, mesh):
    """float32 logits [N, classes] of uint8 NHWC `images` through `eval_step` (the evaluation's
    own compiled step), the batch padded to the device count with masked-out rows."""
    count = len(images)
    size = eval_batch_size(count, mesh.devices.size)
    padded = np.zeros((size,) + images.shape[1:], np.uint8)
    padded[:count] = images
    batch = {"image": padded, "label": np.zeros(size, np.int32), "mask": np.arange(size) < count}
    logits = eval_step(*variables, parallel.shard_batch(batch, mesh))["logits"]
    return np.asarray(jax.device_get(logits))[:count]


def evaluate_workdir(workdir, data_dir, *, checkpoint: str = "latest", batch_size: int | None = None,
                     split: str = "val") -> dict:
    """Evaluate the raw (and EMA) weights saved in `workdir` on `data_dir`'s `split`.

    `checkpoint`: "latest", "best" or a step number. Preprocessing is the run's own (its
    config.json). The data's classes are matched to the run's by name (WORKDIR's class names
    file): a split with a subset of the classes, or in another order, is labelled as the run
    labels it, and a class the run does not know is an error naming it. Returns eval_top1 /
    eval_top5 / eval_count (+ EMA figures) and "step".
    """
    # The classes are matched before the checkpoint is read, so a wrong folder fails at once.
    class_names = read_class_names(workdir, read_config(workdir).model.num_classes)
    source = match_classes(data_lib.open_source(data_dir, split), class_names,
                           where=str(split_folder(data_dir, split)), whose=f"the run in {workdir}")
    run = restore_run(workdir, checkpoint)
    mesh = run.mesh
    prep = run.preprocessing()
    eval_batch = eval_batch_size(batch_size or run.config.eval.batch_size, mesh.devices.size)
    loader = data_lib.eval_loader_from_config(
        run.config.data, prep, source, global_batch_size=eval_batch, process_index=jax.process_index(),
        process_count=jax.process_count(), device_count=jax.local_device_count())
    eval_step = make_eval_step(run.graphdef, mean=prep["mean"], std=prep["std"], mesh=mesh)
    result = evaluate_state(eval_step, run.state, iter(loader), mesh)
    result["step"] = run.step
    result["eval_skipped"] = loader.coverage()["num_skipped"]
    return result
