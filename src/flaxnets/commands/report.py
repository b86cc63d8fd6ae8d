"""`flaxnets report`: results table and plots from training work directories."""

import warnings

NAME = "report"
HELP = "Write a Markdown results table and PNG plots (loss, accuracy, learning rate) for one or more work directories."


def add_arguments(parser):
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                        help="training work directory holding metrics.jsonl (and config.json); "
                             "several are compared on the same plots")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output directory (default: WORKDIR/report for one work directory; for "
                             "several, report-A-vs-B in their common parent directory)")


def run(args) -> int:
    from flaxnets.report import PLOT_FILES, STAGE_PLOT_FILE, default_out_dir, write_report

    out = args.out if args.out is not None else default_out_dir(args.workdirs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_report(args.workdirs, out)
    for w in caught:
        print(f"flaxnets report: warning: {w.message}")
    names = list(PLOT_FILES.values()) + [STAGE_PLOT_FILE] * (f"]({STAGE_PLOT_FILE})" in path.read_text())
    print(f"wrote {path} and {', '.join(names)} in {path.parent}")
    return 0
