"""`flaxnets train`: run a recipe into a work directory (resuming from it when it holds a run)."""

import os

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.text import plural

NAME = "train"
HELP = "Train a recipe; an existing --workdir is resumed exactly where it stopped."


def add_arguments(parser):
    parser.add_argument("--recipe", required=True, help="recipe name (see `flaxnets recipes`), a recipe .py file or a config.json")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="data set: a folder with train/ and val/ class folders, or `flaxnets prepare` output")
    parser.add_argument("--workdir", required=True, metavar="DIR", help="checkpoints, metrics.jsonl, TensorBoard events")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. train.global_batch_size=1024 (repeatable)")
    parser.add_argument("--init-from", metavar="FILE|WORKDIR",
                        help="start from pretrained weights, or from a flaxnets run's work directory (its EMA "
                             "weights when it kept them; e.g. a float run fine-tuned with quant.mode=qat); the "
                             "classifier is replaced when the class count differs")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume a work directory although its config.json differs from this run's")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="stop (with a checkpoint) after optimizer step N, evaluating only if N is an "
                             "evaluation step; rerun with a larger N or without it to continue")
    parser.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process: address of process 0")
    parser.add_argument("--num-processes", type=int, metavar="N", help="multi-process: number of processes")
    parser.add_argument("--process-id", type=int, metavar="I", help="multi-process: this process's index")


def load_config(recipe: str, overrides):
    """The recipe with --set overrides applied; bad keys and values raise UsageError."""
    from flaxnets.config import apply_overrides
    from flaxnets.recipes import load_recipe

    return apply_overrides(load_recipe(recipe), overrides).validate()


def check_data_dir(path: str, config=None) -> None:
    """A one-line error for a data directory that is missing or unreadable, or (given the run's
    `config`, whose data.train_source / data.eval_source may stand in for its splits) that lacks
    a train/ split of two or more classes and a separate val/ split."""
    if not os.path.exists(path):
        raise FlaxnetsError(f"--data {path!r} does not exist; expected a folder with train/ and val/ (or prepared records)")
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        raise FlaxnetsError(f"--data {path!r} is not a readable directory")
    if config is not None:
        from flaxnets.data.layout import training_paths

        training_paths(config.data, path)


def run(args) -> int:
    # Everything the user typed is validated before any device or file is touched.
    config = load_config(args.recipe, args.overrides)
    check_data_dir(args.data, config)
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps {args.max_steps}: expected a positive integer")

    from flaxnets.train import parallel

    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    import jax

    from flaxnets.train.loop import train_and_evaluate
    from flaxnets.train.workdir import check_workdir

    check_workdir(args.workdir)  # creates nothing: the run does once the data and devices are checked
    result = train_and_evaluate(config, data_dir=args.data, workdir=args.workdir, init_from=args.init_from,
                                allow_config_change=args.allow_config_change,
                                stop_after_steps=args.max_steps)
    if result.get("finished_before"):
        return 0  # the run said it was already finished, and how to evaluate it again
    if jax.process_index() == 0:
        summary = f"step {result['step']}/{result['num_steps']}"
        if "eval_top1" in result:
            summary += (f": eval_top1 {result['eval_top1']:.4f} eval_top5 {result['eval_top5']:.4f}"
                        f" over {plural(result['eval_count'], 'image')}")
        if "eval_ema_top1" in result:
            summary += f", EMA top1 {result['eval_ema_top1']:.4f}"
        if result["preempted"] == "Ctrl-C":
            state = "interrupted by Ctrl-C after saving a checkpoint; rerun the same command to resume"
        elif result["preempted"]:
            state = f"preempted ({result['preempted']}) after saving a checkpoint; rerun the same command to resume"
        elif result["step"] < result["num_steps"]:
            state = (f"stopped at --max-steps {args.max_steps}; rerun with a larger --max-steps "
                     "or without it to continue")
        else:
            state = "done"
        print(f"flaxnets train: {state}: {summary}; outputs in {args.workdir}")
    # 128 + SIGINT, as a shell reports a command Ctrl-C ended; SIGTERM is a preemption the
    # scheduler asked for, so that stop is a success (status 0).
    return 130 if result["preempted"] == "Ctrl-C" else 0
