"""`flaxnets demo`: the job `make demo` runs.

Exports scikit-learn's bundled handwritten digits as a folder-of-classes image data set (so the
real file pipeline runs), trains mobilenet_v3_small with the `digits_demo` recipe, evaluates the
held-out digits, and writes the results report. Rerunning resumes (or, when finished, reuses) the
run in the work directory.
"""

import time
from pathlib import Path

NAME = "demo"
HELP = "Train and evaluate mobilenet_v3_small on the bundled digits, then write the report."


def add_arguments(parser):
    parser.add_argument("--workdir", default="runs/demo", help="where checkpoints, logs and the report go")
    parser.add_argument("--data", default="demo_data/digits", help="where the digits image folders are written")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a digits_demo recipe field (repeatable)")


def run(args) -> int:
    from flaxnets.commands.train import load_config

    config = load_config("digits_demo", args.overrides)

    from flaxnets.data.digits import export_digits

    data = Path(args.data)
    if not (data / "val").is_dir():
        export_digits(data)
    print(f"flaxnets demo: digits data set (1,797 images, 10 classes) in {data}/train and {data}/val")

    from flaxnets.train.loop import train_and_evaluate

    start = time.perf_counter()
    result = train_and_evaluate(config, data_dir=str(data), workdir=args.workdir)
    minutes = (time.perf_counter() - start) / 60
    if result["preempted"]:
        print(f"flaxnets demo: stopped by {result['preempted']} at step {result['step']}/{result['num_steps']} "
              "(checkpoint saved); rerun the same command to resume")
        return 130 if result["preempted"] == "Ctrl-C" else 0

    from flaxnets.report import write_report

    report = write_report([args.workdir], Path(args.workdir) / "report")
    workdir = Path(args.workdir)
    if "eval_top1" in result:
        # A rerun of the finished demo trains nothing: these are its last logged evaluation's.
        when = (f"logged at step {result['eval_step']}" if result.get("finished_before")
                else f"step {result['step']}/{result['num_steps']}, {minutes:.1f} min")
        print(f"flaxnets demo: held-out top-1 {100 * result['eval_top1']:.2f}% "
              f"(top-5 {100 * result['eval_top5']:.2f}%) on {result['eval_count']} digits, {when}")
    else:
        print(f"flaxnets demo: step {result['step']}/{result['num_steps']}, no evaluation logged")
    print(f"  checkpoints: {workdir / 'checkpoints'}")
    print(f"  metrics:     {workdir / 'metrics.jsonl'} (TensorBoard: tensorboard --logdir {workdir})")
    print(f"  report:      {report} (plots beside it)")
    print(f"  evaluate again: flaxnets eval --workdir {workdir} --data {data}")
    return 0
