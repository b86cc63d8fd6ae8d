"""`flaxnets summary NAME`: per-layer output shapes, parameters and MACs of one model."""

NAME = "summary"
HELP = "Print a model's layers with output shapes, parameters and MACs."


def add_arguments(parser):
    parser.add_argument("name", help="registry name (see `flaxnets models`)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="input size in pixels (default: the model's)")


def run(args) -> int:
    from flaxnets.models import layer_summary
    from flaxnets.models.registry import model_input

    _, resolution = model_input(args.name, args.resolution)
    rows = layer_summary(args.name, resolution)
    width = max(len(r.path) for r in rows) + 2
    print(f"{args.name} at {resolution}x{resolution}")
    print(f"{'layer':<{width}}{'type':<17}{'output':>16}{'params':>12}{'MACs':>15}")
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        print(f"{r.path:<{width}}{r.kind:<17}{shape:>16}{r.params:>12,}{r.macs:>15,}")
    print(f"{'total':<{width}}{'':<17}{'':>16}{sum(r.params for r in rows):>12,}"
          f"{sum(r.macs for r in rows):>15,}")
    return 0
