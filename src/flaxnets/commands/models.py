"""`flaxnets models`: the model zoo table."""

import json

NAME = "models"
HELP = "List the model zoo: parameters, MACs and resolution per model."


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def row_cells(row: dict) -> list[str]:
    """One zoo row as printed (README's table too): name, params, MACs, published MACs,
    resolution, published top-1."""
    top1 = "-" if row["published_top1"] is None else f"{row['published_top1']:.1f}"
    return [row["name"], f"{row['params']:,}", _human(row["macs"]), row["published_macs"] or "-",
            str(row["resolution"]), top1]


def run(args) -> int:
    from flaxnets.models import count_macs, count_params, get_spec, list_models

    rows = []
    for name in list_models():
        spec = get_spec(name)
        rows.append({
            "name": name, "params": count_params(name), "macs": count_macs(name),
            "resolution": spec.resolution, "published_top1": spec.published_top1,
            "published_macs": spec.published_macs, "crop_fraction": round(spec.crop_fraction, 4),
            "interpolation": spec.interpolation,
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    widths = (-28, 12, 10, 10, 6, 8)  # negative: left-aligned
    for cells in [["model", "params", "MACs", "published", "res", "top-1"]] + [row_cells(r) for r in rows]:
        print("".join(c.ljust(-w) if w < 0 else c.rjust(w) for c, w in zip(cells, widths)))
    print("MACs: multiply-accumulates per image at the default resolution (conv + dense), equal to\n"
          "those of the keras.applications models; published: the source's printed multiply-adds\n"
          "(docs/MODELS.md explains where and why they differ).")
    return 0
