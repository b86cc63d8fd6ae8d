"""Results reports: a Markdown table and PNG plots from one or more training work directories.

A work directory holds `metrics.jsonl` (one JSON object per line, written by the training
loop: `step`, `epoch` and any of the metric names below) and `config.json` (the resolved
recipe). The report follows the write-ups the recipes come from: a table of evaluations by
epoch with top-1 / top-5 for the raw and the EMA weights, the best row marked, the final and
best figures, and the recipe's published accuracy beside ours.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from flaxnets.errors import FlaxnetsError
from flaxnets.recipes import list_recipes, recipe_info
from flaxnets.train.workdir import CONFIG_FILE, METRICS_FILE, read_config

REPORT_FILE = "report.md"
PLOT_FILES = {
    "loss": "loss.png",
    "accuracy": "accuracy.png",
    "learning_rate": "learning_rate.png",
}

@dataclass
class Run:
    """One work directory's metrics and recipe, as read from disk."""

    workdir: Path
    label: str
    records: list[dict]
    recipe: str | None = None
    model: str | None = None
    published_top1: float | None = None  # fraction 0-1
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of every record that has a finite `key`."""
        xs, ys = [], []
        for r in self.records:
            v = r.get(key)
            if _is_number(v):
                xs.append(float(r["epoch"]))
                ys.append(float(v))
        return xs, ys

    def evaluations(self) -> list[dict]:
        """Records carrying an evaluation (raw or EMA weights), in file order."""
        return [r for r in self.records
                if _is_number(r.get("eval_top1")) or _is_number(r.get("eval_ema_top1"))]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Parses a metrics.jsonl file into a list of records.

    A line that is not a JSON object with numeric `step` and `epoch` raises FlaxnetsError
    naming the file and line, except a corrupt last line, which a run killed mid-write
    leaves behind: that one is skipped with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FlaxnetsError(f"{path}: no such metrics file (expected {METRICS_FILE} written by training)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        lineno = i + 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                warnings.warn(f"{path}:{lineno}: skipping a corrupt last line ({e.msg}); "
                              "a run killed while writing leaves one", stacklevel=2)
                continue
            raise FlaxnetsError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise FlaxnetsError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        for key in ("step", "epoch"):
            if not _is_number(record.get(key)):
                raise FlaxnetsError(f"{path}:{lineno}: missing or non-numeric {key!r} "
                                    f"(got {record.get(key)!r})")
        records.append(record)
    if not records:
        raise FlaxnetsError(f"{path}: no metric records")
    return records


def _as_fraction(v) -> float | None:
    # Published figures are quoted as percentages (75.7) or fractions (0.757).
    if not _is_number(v):
        return None
    return float(v) / 100.0 if v > 1.0 else float(v)


def read_run(workdir: str | os.PathLike, label: str | None = None) -> Run:
    """Reads WORKDIR/metrics.jsonl and, when present, WORKDIR/config.json."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FlaxnetsError(f"{workdir}: no such work directory")
    run = Run(workdir=workdir, label=label or workdir.resolve().name,
              records=read_metrics(workdir / METRICS_FILE))
    if not (workdir / CONFIG_FILE).is_file():
        run.notes.append(f"no {CONFIG_FILE}: recipe and published accuracy unknown")
        return run
    config = read_config(workdir)
    run.recipe = config.name or None
    run.source = config.source or None
    run.model = config.model.name
    if run.recipe in list_recipes():
        run.published_top1 = _as_fraction(recipe_info(run.recipe)["published_top1"])
    else:
        # An unknown (user) recipe: the model's own published figure is the best reference.
        # Imported here: the model registry imports JAX (4.4 s measured on 2 cores), which a
        # report of bundled recipes does not need.
        from flaxnets.models import get_spec

        run.published_top1 = _as_fraction(get_spec(run.model).published_top1)
        if run.published_top1 is not None:
            run.notes.append(f"published top-1 is {run.model}'s published figure "
                             "(the recipe is not a bundled one)")
    return run


def _pct(v) -> str:
    return f"{100.0 * v:.2f}" if _is_number(v) else "-"


def _epoch(v) -> str:
    return f"{v:g}" if float(v) != int(v) else str(int(v))


def _best(evals: list[dict], key: str) -> dict | None:
    # Ties go to the earliest evaluation, as in the write-ups' "best" rows.
    scored = [r for r in evals if _is_number(r.get(key))]
    return max(scored, key=lambda r: r[key]) if scored else None


def _summary(run: Run) -> dict:
    evals = run.evaluations()
    final = evals[-1] if evals else None
    return {
        "final": final,
        "best": _best(evals, "eval_top1"),
        "best_ema": _best(evals, "eval_ema_top1"),
    }


def _results_table(run: Run) -> list[str]:
    evals = run.evaluations()
    summary = _summary(run)
    has_ema = any(_is_number(r.get("eval_ema_top1")) for r in evals)
    has_count = any(_is_number(r.get("eval_count")) for r in evals)
    header = ["Epoch", "Step", "Top-1", "Top-5"]
    if has_ema:
        header += ["EMA Top-1", "EMA Top-5"]
    if has_count:
        header += ["Images"]
    header += ["Note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in evals:
        notes = []
        if r is summary["best"]:
            notes.append("best")
        if r is summary["best_ema"]:
            notes.append("best EMA")
        if r is summary["final"]:
            notes.append("final")
        row = [_epoch(r["epoch"]), str(int(r["step"])), _pct(r.get("eval_top1")), _pct(r.get("eval_top5"))]
        if has_ema:
            row += [_pct(r.get("eval_ema_top1")), _pct(r.get("eval_ema_top5"))]
        if has_count:
            row += [str(int(r["eval_count"])) if _is_number(r.get("eval_count")) else "-"]
        row += [", ".join(notes)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _figure_line(name: str, r: dict | None, top1: str, top5: str) -> str:
    if r is None:
        return f"- {name}: -"
    return (f"- {name}: top-1 {_pct(r.get(top1))}%, top-5 {_pct(r.get(top5))}% "
            f"(epoch {_epoch(r['epoch'])}, step {int(r['step'])})")


def _run_section(run: Run, heading: str) -> list[str]:
    s = _summary(run)
    lines = [f"{heading} {run.label}", "", f"Work directory: `{run.workdir}`", ""]
    lines.append(f"- Recipe: {run.recipe or 'unknown'}" + (f" (model {run.model})" if run.model else ""))
    if run.source:
        lines.append(f"- Source: {run.source}")
    if run.published_top1 is not None:
        published = f"- Published top-1: {_pct(run.published_top1)}%"
        # Recipes with EMA publish the EMA weights' accuracy: compare with the better of the two.
        candidates = [(r[k], which) for r, k, which in
                      ((s["best"], "eval_top1", "best"), (s["best_ema"], "eval_ema_top1", "best EMA"))
                      if r is not None]
        if candidates:
            ours, which = max(candidates)
            diff = 100.0 * (ours - run.published_top1)
            published += f"; ours ({which}) {_pct(ours)}% ({diff:+.2f} points)"
        lines.append(published)
    else:
        lines.append("- Published top-1: not known for this recipe")
    last = run.records[-1]
    lines.append(f"- Trained to: epoch {_epoch(last['epoch'])}, step {int(last['step'])}")
    losses = run.series("train_loss")[1]
    if losses:
        lines.append(f"- Final train loss: {losses[-1]:.4f}")
    throughput = sorted(run.series("images_per_second")[1])
    if throughput:
        lines.append(f"- Training throughput (median of logged values): "
                     f"{throughput[len(throughput) // 2]:,.0f} images/s")
    lines.append(_figure_line("Final", s["final"], "eval_top1", "eval_top5"))
    lines.append(_figure_line("Best", s["best"], "eval_top1", "eval_top5"))
    if s["best_ema"] is not None:
        lines.append(_figure_line("Final (EMA)", s["final"], "eval_ema_top1", "eval_ema_top5"))
        lines.append(_figure_line("Best (EMA)", s["best_ema"], "eval_ema_top1", "eval_ema_top5"))
    lines += [f"- Note: {n}" for n in run.notes]
    lines.append("")
    if run.evaluations():
        lines += _results_table(run)
    else:
        lines.append("No evaluations recorded.")
    lines.append("")
    return lines


def _comparison_table(runs: list[Run]) -> list[str]:
    lines = ["| Work directory | Recipe | Epochs | Best top-1 | Best top-5 | Best EMA top-1 | Final top-1 | Published top-1 |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s = _summary(run)
        lines.append("| " + " | ".join([
            run.label, run.recipe or "unknown", _epoch(run.records[-1]["epoch"]),
            _pct(s["best"]["eval_top1"]) if s["best"] else "-",
            _pct(s["best"].get("eval_top5")) if s["best"] else "-",
            _pct(s["best_ema"]["eval_ema_top1"]) if s["best_ema"] else "-",
            _pct(s["final"].get("eval_top1")) if s["final"] else "-",
            _pct(run.published_top1),
        ]) + " |")
    return lines


def _plot(runs: list[Run], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    specs = {
        "loss": ("Training loss", "loss", [("train_loss", "-", "")]),
        "accuracy": ("Validation top-1", "top-1 (%)",
                     [("eval_top1", "-", ""), ("eval_ema_top1", "--", " (EMA)")]),
        "learning_rate": ("Learning rate", "learning rate", [("learning_rate", "-", "")]),
    }
    for kind, (title, ylabel, curves) in specs.items():
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        drawn = 0
        for i, run in enumerate(runs):
            color = f"C{i % 10}"
            for key, style, suffix in curves:
                xs, ys = run.series(key)
                if not xs:
                    continue
                if kind == "accuracy":
                    ys = [100.0 * y for y in ys]
                ax.plot(xs, ys, style, color=color, label=run.label + suffix,
                        marker="o" if len(xs) < 30 else None, markersize=3)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no data logged", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / PLOT_FILES[kind]
        fig.savefig(path, format="png")
        plt.close(fig)
        paths[kind] = path
    return paths


def _labels(workdirs: list[Path]) -> list[str]:
    # Legend names are the directory names; identical names get their parent prepended.
    names = [w.resolve().name for w in workdirs]
    return [str(Path(w.resolve().parent.name) / n) if names.count(n) > 1 else n
            for w, n in zip(workdirs, names)]


def write_report(workdirs, out_dir) -> Path:
    """Writes report.md and loss / accuracy / learning-rate PNG plots for one or more work
    directories into `out_dir` (created if needed); returns the Markdown file's path.

    Several work directories are compared on the same plots, one line per directory.
    """
    if isinstance(workdirs, (str, os.PathLike)):
        workdirs = [workdirs]
    workdirs = [Path(w) for w in workdirs]
    if not workdirs:
        raise FlaxnetsError("no work directory given")
    runs = [read_run(w, label) for w, label in zip(workdirs, _labels(workdirs))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plot(runs, out_dir)

    lines = ["# Results" if len(runs) == 1 else "# Results: comparison", ""]
    if len(runs) > 1:
        lines += _comparison_table(runs) + [""]
    lines += ["Top-1 / top-5 in percent on the evaluation set; EMA columns use the "
              "exponential-moving-average weights.", ""]
    heading = "##"
    for run in runs:
        lines += _run_section(run, heading)
    lines += ["## Plots", ""]
    for kind, path in plots.items():
        lines.append(f"![{kind.replace('_', ' ')}]({path.name})")
        lines.append("")
    report_path = out_dir / REPORT_FILE
    report_path.write_text("\n".join(lines), encoding="utf-8")
    return report_path
