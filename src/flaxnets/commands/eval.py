"""`flaxnets eval`: top-1 / top-5 over every image of a labelled data set."""

import json

from flaxnets.errors import UsageError
from flaxnets.text import plural

NAME = "eval"
HELP = ("Evaluate a run's saved weights (--workdir) or imported weights (--model NAME --weights FILE) "
        "on every image of a labelled folder.")


def add_arguments(parser):
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="labelled data: a folder with a val/ split (or class folders), or prepared records")
    parser.add_argument("--split", default="val", help="split folder to evaluate (default: val)")
    parser.add_argument("--workdir", metavar="DIR", help="a `flaxnets train` work directory")
    parser.add_argument("--checkpoint", default="latest", help="with --workdir: latest, best or a step number")
    parser.add_argument("--model", metavar="NAME", help="zoo model name (with --weights)")
    parser.add_argument("--weights", metavar="FILE", help="weights file: timm / EfficientNet-PyTorch state dict or Keras")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _evaluate_weights(args) -> dict:
    import dataclasses

    import jax

    from flaxnets import data as data_lib
    from flaxnets.config import Config, DataConfig, ModelConfig
    from flaxnets.data.sources import match_classes, split_folder
    from flaxnets.imagenet import imagenet_synsets
    from flaxnets.models import get_spec
    from flaxnets.train import parallel
    from flaxnets.train.evaluate import eval_batch_size, evaluate, model_evaluator
    from flaxnets.train.from_config import resolve_preprocessing
    from flaxnets.weights import create_pretrained

    spec = get_spec(args.model)
    source = data_lib.open_source(args.data, args.split)
    synsets = imagenet_synsets()
    if set(source.class_names) <= set(synsets):
        # ImageNet class folders, all or some: labelled by synset, as the weights were trained.
        source = match_classes(source, synsets, where=str(split_folder(args.data, args.split)),
                               whose="ImageNet-1k")
    model, info = create_pretrained(args.model, args.weights)
    mesh = parallel.make_mesh()
    # The model's own evaluation as a config: its reference's centre crop (data.crop), the rest the
    # model's defaults, read by the same resolver and loader as a run's evaluation.
    data = DataConfig(crop=spec.eval_crop)
    prep = resolve_preprocessing(dataclasses.replace(Config(), model=ModelConfig(name=args.model), data=data))
    loader = data_lib.eval_loader_from_config(
        data, prep, source, global_batch_size=eval_batch_size(args.batch_size or 64, mesh.devices.size),
        process_index=jax.process_index(), process_count=jax.process_count(), device_count=jax.local_device_count())
    eval_step, variables = model_evaluator(model, mean=info.mean or spec.mean, std=info.std or spec.std, mesh=mesh)
    result = evaluate(eval_step, {"raw": variables}, iter(loader), mesh)["raw"]
    return {"eval_top1": result["top1"] if result["count"] else 0.0,
            "eval_top5": result["top5"] if result["count"] else 0.0, "eval_count": result["count"],
            "eval_skipped": loader.coverage()["num_skipped"]}


def run(args) -> int:
    from flaxnets.commands.train import check_data_dir
    from flaxnets.data.decode import skipped_note

    if bool(args.workdir) == bool(args.model or args.weights):
        raise UsageError("give either --workdir DIR, or --model NAME with --weights FILE")
    if not args.workdir and not (args.model and args.weights):
        raise UsageError("--model and --weights go together")
    check_data_dir(args.data)
    if args.workdir:
        from flaxnets.train.evaluate import evaluate_workdir

        result = evaluate_workdir(args.workdir, args.data, checkpoint=args.checkpoint,
                                  batch_size=args.batch_size, split=args.split)
    else:
        from flaxnets.models import get_spec

        get_spec(args.model)  # unknown names fail here with the list of valid ones
        result = _evaluate_weights(args)
    if args.json:
        print(json.dumps(result))
    else:
        line = (f"top-1 {100 * result['eval_top1']:.2f}%  top-5 {100 * result['eval_top5']:.2f}%  "
                f"over {plural(result['eval_count'], 'image')}")
        if "eval_ema_top1" in result:
            line += f"  (EMA top-1 {100 * result['eval_ema_top1']:.2f}%  top-5 {100 * result['eval_ema_top5']:.2f}%)"
        if "step" in result:
            line += f"  [checkpoint step {result['step']}]"
        if result.get("eval_skipped"):
            line += f"  ({skipped_note(result['eval_skipped'])}, named above)"
        print(line)
    return 0
