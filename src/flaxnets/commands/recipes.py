"""`flaxnets recipes`: list the bundled training recipes."""

NAME = "recipes"
HELP = "List the bundled recipes: model, epochs, global batch, published top-1."


def add_arguments(parser):
    parser.add_argument("--show", metavar="RECIPE", help="print one recipe's full configuration as JSON")


def run(args) -> int:
    from flaxnets.recipes import list_recipes, load_recipe, recipe_info

    if args.show:
        print(load_recipe(args.show).to_json())
        return 0
    rows = [recipe_info(name) for name in list_recipes()]
    header = ("recipe", "model", "epochs", "batch", "top-1")
    table = [header] + [
        (r["name"], r["model"], f"{r['epochs']:g}" if r["epochs"] == int(r["epochs"]) else f"{r['epochs']:.2f}",
         str(r["batch"]), "-" if r["published_top1"] is None else f"{r['published_top1']:.1f}")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return 0
