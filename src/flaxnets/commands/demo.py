"""`flaxnets demo`: the job `make demo` runs."""

NAME = "demo"
HELP = "Run the demonstration job on bundled data."


def add_arguments(parser):
    parser.add_argument("--workdir", default="runs/demo", help="where the demo writes its outputs")


def run(args) -> int:
    print("flaxnets demo: nothing to run yet")
    return 0
