"""`flaxnets report`: results table and plots from training work directories."""

import os
import warnings

NAME = "report"
HELP = "Write a Markdown results table and PNG plots (loss, accuracy, learning rate) for one or more work directories."


def add_arguments(parser):
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                        help="training work directory holding metrics.jsonl (and config.json); "
                             "several are compared on the same plots")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory (default: WORKDIR/report for one work directory, "
                             "./report for several)")


def run(args) -> int:
    from flaxnets.report import write_report

    out = args.out
    if out is None:
        out = os.path.join(args.workdirs[0], "report") if len(args.workdirs) == 1 else "report"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_report(args.workdirs, out)
    for w in caught:
        print(f"flaxnets report: warning: {w.message}")
    print(f"wrote {path}")
    return 0
