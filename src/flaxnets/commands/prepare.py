"""`flaxnets prepare SRC OUT`: pack an image folder data set into ArrayRecord shards."""

from pathlib import Path

from flaxnets.errors import FlaxnetsError, UsageError

NAME = "prepare"
HELP = "Pack an image-folder data set (ImageNet layout) into resumable ArrayRecord shards."


def add_arguments(parser):
    parser.add_argument("src", metavar="SRC", help="data set folder (train/ and val/ sub-folders, or one split)")
    parser.add_argument("out", metavar="OUT", help="output folder; re-running resumes an interrupted run")
    parser.add_argument("--splits", nargs="+", default=["train", "val"],
                        help="sub-folders of SRC to pack (default: train val; SRC itself if none exist)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default 0: this process)")
    parser.add_argument("--examples-per-shard", type=int, default=1024, help="examples per shard (default 1024)")


def run(args) -> int:
    from flaxnets.data.records import prepare_split
    from flaxnets.data.sources import open_source

    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: expected 0 or more")
    if args.examples_per_shard <= 0:
        raise UsageError(f"--examples-per-shard {args.examples_per_shard}: expected a positive number")
    src, out = Path(args.src), Path(args.out)
    if not src.is_dir():
        raise FlaxnetsError(f"SRC {src} is not a folder")
    present = [s for s in args.splits if (src / s).is_dir()]
    jobs = [(s, out / s) for s in present] or [(src.name, out)]
    for split, out_dir in jobs:
        source = open_source(src, split)
        if not hasattr(source, "entries"):
            raise FlaxnetsError(f"{src / split}: already packed records; expected image files")
        prepare_split(source, out_dir, split=split, workers=args.workers,
                      examples_per_shard=args.examples_per_shard)
    return 0
