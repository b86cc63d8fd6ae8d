"""`flaxnets lr`: print (and optionally plot) a recipe's learning-rate schedule."""

from flaxnets.errors import UsageError
from flaxnets.text import plural

NAME = "lr"
HELP = "Print a recipe's learning rate at given optimizer steps, or plot the whole schedule."


def add_arguments(parser):
    parser.add_argument("recipe", help="recipe name (see `flaxnets recipes`), recipe .py file or config.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. train.global_batch_size=1024 (repeatable)")
    parser.add_argument("--steps", default="", help="comma-separated optimizer steps, e.g. 0,3127,100000")
    parser.add_argument("--num-train-examples", type=int, default=None,
                        help="training-set size when the recipe leaves data.num_train_examples unset")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the schedule over the whole run into FILE.png")


def _parse_steps(text: str) -> list[int]:
    steps = []
    for item in text.split(","):
        item = item.strip().replace("_", "")
        if not item:
            continue
        if not item.isdigit():
            raise UsageError(f"--steps item {item!r}: expected a non-negative integer")
        steps.append(int(item))
    return steps


def run(args) -> int:
    steps = _parse_steps(args.steps)
    if not steps and not args.plot:
        raise UsageError("nothing to do: give --steps S1,S2,... and/or --plot FILE.png")

    import numpy as np

    from flaxnets.config import apply_overrides
    from flaxnets.recipes import load_recipe
    from flaxnets.train.schedules import build_schedule, config_steps_per_epoch, total_steps

    config = apply_overrides(load_recipe(args.recipe), args.overrides)
    num_train = args.num_train_examples or config.data.num_train_examples
    if num_train is None:
        raise UsageError(f"recipe {args.recipe!r} leaves data.num_train_examples unset; pass --num-train-examples N")
    schedule = build_schedule(config, num_train)
    if steps:
        values = np.asarray(schedule(np.asarray(steps)), np.float64)
        for step, value in zip(steps, values):
            print(f"{step} {value:.9g}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from flaxnets.report import set_learning_rate_scale

        total = total_steps(config, num_train)
        spe = config_steps_per_epoch(config, num_train)
        xs = np.unique(np.linspace(0, total, num=min(total + 1, 4000)).astype(np.int64))
        ys = np.asarray(schedule(xs))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(xs / spe, ys)
        scale = set_learning_rate_scale(ax, ys)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate" + (f" ({scale} scale)" if scale != "linear" else ""))
        ax.set_title(f"{config.name or args.recipe}: batch {config.train.global_batch_size}, "
                     f"{plural(total, 'step', spec=',')}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(args.plot, dpi=120)
        except OSError as e:
            raise UsageError(f"--plot {args.plot!r}: cannot write ({e.strerror})") from None
        finally:
            plt.close(fig)
        print(f"wrote {args.plot} (learning rate over {plural(total, 'step', spec=',')}, {scale} y axis)")
    return 0
