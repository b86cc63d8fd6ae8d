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
