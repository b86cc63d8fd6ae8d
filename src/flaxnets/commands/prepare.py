"""`flaxnets prepare`: pack an image-folder data set, or the ImageNet-2012 archives as
downloaded, into verified ArrayRecord shards."""

import sys
import time
from pathlib import Path

from flaxnets.errors import FlaxnetsError, UsageError

NAME = "prepare"
HELP = ("Pack an image-folder data set (ImageNet layout, or the Kaggle copy) or the ImageNet-2012 "
        "archives into resumable ArrayRecord shards.")

KAGGLE_DATA = "ILSVRC/Data/CLS-LOC"
KAGGLE_GROUND_TRUTH = "LOC_val_solution.csv"
# On a terminal the bar redraws twice a second; in a log, a line every half minute.
LOG_INTERVAL_S = 30.0


def add_arguments(parser):
    parser.add_argument("src", metavar="SRC", nargs="?",
                        help="data set folder (train/ and val/ sub-folders, one split, or the Kaggle "
                             "download with ILSVRC/Data/CLS-LOC); omit it when giving the archives")
    parser.add_argument("out", metavar="OUT", help="output folder; re-running resumes an interrupted run")
    parser.add_argument("--splits", nargs="+", default=["train", "val"],
                        help="sub-folders of SRC to pack (default: train val; SRC itself if none exist)")
    parser.add_argument("--train-tar", metavar="TAR", help="ILSVRC2012_img_train.tar (a tar of per-class tars)")
    parser.add_argument("--val-tar", metavar="TAR", help="ILSVRC2012_img_val.tar (flat validation JPEGs)")
    parser.add_argument("--devkit", metavar="TGZ",
                        help="ILSVRC2012_devkit_t12.tar.gz: validation labels for --val-tar")
    parser.add_argument("--val-ground-truth", metavar="CSV",
                        help="LOC_val_solution.csv (Kaggle) as the validation labels, for --val-tar or SRC")
    parser.add_argument("--verify-archives", action="store_true",
                        help="check the archives against their published MD5s first (reads them once)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default 0: this process)")
    parser.add_argument("--examples-per-shard", type=int, default=1024, help="examples per shard (default 1024)")


def _progress(unit: str, rate_unit: str = "img/s"):
    """`progress(done, total)`: a bar with the rate per second and ETA on stderr."""
    from flaxnets.train.progress import ProgressBar

    state = {"bar": None, "last": 0.0}

    def update(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = ProgressBar(total, start_step=done, every=1, unit=unit, rate_unit=rate_unit)
        bar, now = state["bar"], time.monotonic()
        if bar.tty or done == total or now - state["last"] >= LOG_INTERVAL_S:
            state["last"] = now
            bar.update(done)
            if done == total:
                bar.close()

    return update


def _archive_sources(args, log):
    """[(split, source)] for the archive form, verified first when asked."""
    from flaxnets.data import imagenet_archives

    if args.val_tar and not (args.devkit or args.val_ground_truth):
        raise UsageError("--val-tar needs --devkit ILSVRC2012_devkit_t12.tar.gz (or --val-ground-truth CSV)")
    if args.devkit and not args.val_tar:
        raise UsageError("--devkit labels --val-tar; give --val-tar too")
    if args.verify_archives:
        given = {"train": args.train_tar, "val": args.val_tar, "devkit": args.devkit}
        imagenet_archives.verify_archives({k: v for k, v in given.items() if v}, workers=args.workers, log=log,
                                          progress=_progress("MiB hashed", "MiB/s"))
    # The labels first, so that a wrong devkit is reported before the tars are indexed.
    truth = imagenet_archives.ValGroundTruth(devkit=args.devkit, csv=args.val_ground_truth) if args.val_tar else None
    out, jobs, class_names = Path(args.out), [], None
    if args.train_tar:
        log(f"train: indexing {args.train_tar}")
        train = imagenet_archives.open_train_archive(
            args.train_tar, workers=args.workers, index_cache=out / "train" / imagenet_archives.INDEX_FILE,
            progress=_progress("train class tars indexed", "tars/s"), log=log)
        class_names = train.class_names
        jobs.append(("train", train))
    if args.val_tar:
        log(f"val: indexing {args.val_tar}")
        jobs.append(("val", imagenet_archives.open_val_archive(
            args.val_tar, truth, class_names=class_names, index_cache=out / "val" / imagenet_archives.INDEX_FILE,
            log=log)))
    return jobs


def run(args) -> int:
    from flaxnets.data.imagenet_archives import count_warnings
    from flaxnets.data.records import prepare_split
    from flaxnets.data.sources import open_source

    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: expected 0 or more")
    if args.examples_per_shard <= 0:
        raise UsageError(f"--examples-per-shard {args.examples_per_shard}: expected a positive number")
    archives = args.train_tar or args.val_tar or args.devkit
    if archives and args.src:
        raise UsageError(f"SRC {args.src} and --train-tar/--val-tar: give the folder or the archives, not both")
    if not archives and not args.src:
        raise UsageError("expected SRC OUT, or --train-tar/--val-tar with --devkit and OUT")
    if args.verify_archives and not archives:
        raise UsageError("--verify-archives checks --train-tar/--val-tar/--devkit; none given")

    def log(line):
        print(line, flush=True)

    out = Path(args.out)
    imagenet = bool(archives)
    if archives:
        jobs = [(split, source, out / split) for split, source in _archive_sources(args, log)]
    else:
        src = Path(args.src)
        if not src.is_dir():
            raise FlaxnetsError(f"SRC {src} is not a folder")
        flat_options = {"ground_truth": args.val_ground_truth} if args.val_ground_truth else {}
        if (src / KAGGLE_DATA).is_dir():
            # The Kaggle download keeps its CSV three levels above the image folders.
            imagenet = True
            if not flat_options and (src / KAGGLE_GROUND_TRUTH).is_file():
                flat_options = {"ground_truth": src / KAGGLE_GROUND_TRUTH}
            src = src / KAGGLE_DATA
        present = [s for s in args.splits if (src / s).is_dir()]
        jobs = []
        for split, out_dir in [(s, out / s) for s in present] or [(src.name, out)]:
            source = open_source(src, split, **(flat_options if split != "train" else {}))
            if not hasattr(source, "entries"):
                raise FlaxnetsError(f"{src / split}: already packed records; expected image files")
            jobs.append((split, source, out_dir))
    warnings = []
    for split, source, out_dir in jobs:
        prepare_split(source, out_dir, split=split, workers=args.workers, log=log,
                      examples_per_shard=args.examples_per_shard, progress=_progress(f"{split} images"))
        if imagenet:
            warnings += count_warnings(split, len(source.entries()), len(source.class_names))
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    return 0
