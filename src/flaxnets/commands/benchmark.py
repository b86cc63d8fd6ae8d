"""`flaxnets benchmark data|model`: time the input pipeline or a model's step."""

NAME = "benchmark"
HELP = "Time the input pipeline (data) or a model's train/inference step (model)."


def add_arguments(parser):
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    data = sub.add_parser("data", help="images/s of the train transform over a folder of class folders")
    data.add_argument("dir", metavar="DIR", help="folder of class sub-folders of JPEGs (or with train/)")
    data.add_argument("--recipe", metavar="NAME",
                      help="time this recipe's own training pipeline (its data.* keys: crop, size, "
                           "interpolation, augmentation), changed with --set; excludes --augment/--crop/--image-size")
    data.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="with --recipe: override a recipe field, as `flaxnets train --set` (repeatable)")
    data.add_argument("--augment", choices=["none", "autoaugment", "randaugment"], default=None,
                      help="augmentation after crop and flip (default none)")
    data.add_argument("--augment-on", choices=["host", "device"], default=None,
                      help="data.augment_on: device times only the host's share, drawing the choices "
                           "(default host)")
    data.add_argument("--workers", type=int, default=0, help="decoding worker processes (default 0: in-process)")
    data.add_argument("--batches", type=int, default=20, help="batches to time (default 20)")
    data.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    data.add_argument("--image-size", type=int, default=None, help="output resolution (default 224)")
    data.add_argument("--crop", choices=["tf_vision", "tf_tpu", "inception"], default=None,
                      help="crop flavour (data.crop; default tf_vision)")
    data.add_argument("--json", action="store_true", help="print one JSON object")
    model = sub.add_parser("model", help="images/s of a model's train or inference step")
    model.add_argument("name", metavar="NAME", help="model name (see `flaxnets models`)")
    model.add_argument("--batch", type=int, default=128, help="global batch size (default 128)")
    model.add_argument("--resolution", type=int, default=None, help="input resolution (default: the model's)")
    model.add_argument("--mode", choices=["train", "infer"], default="train", help="what to time")
    model.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                       help="compute dtype (default: the recipe's for train, bfloat16 for infer)")
    model.add_argument("--recipe", metavar="NAME",
                       help="train: the recipe whose step is timed (optimizer, EMA, loss, BatchNorm grouping, "
                            "precision), default the model's reference recipe, e.g. mobilenet_v3_large_tfvision")
    model.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="train: override a recipe field, as `flaxnets train --set` (repeatable)")
    model.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    model.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    if args.target == "data":
        from flaxnets.data.benchmark import run as run_data

        if getattr(args, "recipe", None) is None:
            return run_data(args)
        from flaxnets.commands.train import load_config
        from flaxnets.train.from_config import resolve_preprocessing

        if args.augment or args.augment_on or args.crop or args.image_size is not None:
            return run_data(args)  # the flag that contradicts the recipe is run_data's one-line error
        config = load_config(args.recipe, args.overrides)
        return run_data(args, config=config, prep=resolve_preprocessing(config))
    from flaxnets.train.benchmark import run as run_model

    return run_model(args)
