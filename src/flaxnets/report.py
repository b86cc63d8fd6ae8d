"""Results reports: a Markdown table and PNG plots from one or more training work directories.

A work directory holds `metrics.jsonl` (one JSON object per line, written by the training
loop: `step`, `epoch` and any of the metric names below) and `config.json` (the resolved
recipe). The report follows the write-ups the recipes come from: a table of evaluations by
epoch with top-1 / top-5 for the raw and the EMA weights, the best row marked, the final and
best figures, and the recipe's published accuracy beside ours.

Every published figure here (a bundled recipe's or a model's) was measured on ImageNet-1k's
50,000 validation images; a run on other data is not compared with it (a 4-class folder at
25% is not "-50 points" from 75.7%). "Best" is the checkpoint `flaxnets eval --checkpoint best`
restores: the highest raw top-1 (`flaxnets.train.checkpoint.BEST_METRIC`), ties going to the
later step, as Orbax's best-checkpoint policy breaks them.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from flaxnets import imagenet
from flaxnets.errors import FlaxnetsError
from flaxnets.recipes import list_recipes, recipe_info
from flaxnets.text import plural
from flaxnets.train.workdir import CLASS_NAMES_FILE, CONFIG_FILE, EXPORTS_FILE, METRICS_FILE, read_config

REPORT_FILE = "report.md"
PLOT_FILES = {
    "loss": "loss.png",
    "accuracy": "accuracy.png",
    "learning_rate": "learning_rate.png",
}
#: Written beside them for a run with progressive-learning stage records.
STAGE_PLOT_FILE = "progressive.png"
#: What a progressive-learning stage record carries (`flaxnets.train.progressive.Stage.record`),
#: plotted against the step on progressive.png: the image size, then the regularisers.
STAGE_KEYS = ("image_size", "randaugment_magnitude", "mixup_alpha", "cutmix_alpha", "dropout_rate")
#: What the published figures were measured on.
PUBLISHED_DATA = "ImageNet-1k"
#: The metric the best checkpoint is kept by (`flaxnets.train.checkpoint.BEST_METRIC`, which
#: imports Orbax and JAX; a test holds the two equal).
BEST_METRIC = "eval_top1"

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
    #: None when the run's data is the published data; else why it is not (or cannot be shown).
    other_data: str | None = None
    #: False when the run kept no best checkpoint (checkpoint.keep_best off).
    keep_best: bool = True
    #: The run's `quant` section when it trained quantization-aware (`quant.mode=qat`), else None.
    quant: object = None
    #: The LiteRT exports of the run (WORKDIR/exports.jsonl records), oldest first.
    exports: list[dict] = field(default_factory=list)
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


def _read_class_names(workdir: Path) -> list[str] | None:
    path = workdir / CLASS_NAMES_FILE
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def other_data(workdir, records: list[dict], num_classes: int | None) -> str | None:
    """None when the run in `workdir` was trained and evaluated on ImageNet-1k, the data every
    published figure was measured on; else a phrase saying why its data is other data.

    The evidence a work directory holds: its class names (class_names.json) must be the 1000
    ImageNet synsets in label order, and its evaluations must have counted the 50,000 validation
    images (a subset scores differently). A run that recorded no class names is judged by its
    class count and evaluation count alone."""
    names = _read_class_names(Path(workdir))
    counts = {int(r["eval_count"]) for r in records if _is_number(r.get("eval_count"))}
    if names is not None and names != imagenet.imagenet_synsets():
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f"its data is not {PUBLISHED_DATA} ({plural(len(names), 'class')}: {shown})"
    if names is None and num_classes is not None and num_classes != imagenet.NUM_CLASSES:
        return f"its model has {plural(num_classes, 'class')}, {PUBLISHED_DATA} has {imagenet.NUM_CLASSES:,}"
    if counts and counts != {imagenet.VAL_IMAGES}:
        shown = ", ".join(f"{c:,}" for c in sorted(counts))
        return (f"it was evaluated on {shown} images, not {PUBLISHED_DATA}'s "
                f"{imagenet.VAL_IMAGES:,} validation images")
    if names is None and not counts:
        return f"it records neither class names nor evaluation counts to show its data is {PUBLISHED_DATA}"
    return None


def read_run(workdir: str | os.PathLike, label: str | None = None) -> Run:
    """Reads WORKDIR/metrics.jsonl and, when present, WORKDIR/config.json."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FlaxnetsError(f"{workdir}: no such work directory")
    run = Run(workdir=workdir, label=label or workdir.resolve().name,
              records=read_metrics(workdir / METRICS_FILE))
    if not (workdir / CONFIG_FILE).is_file():
        run.notes.append(f"no {CONFIG_FILE}: recipe and published accuracy unknown")
        run.other_data = other_data(workdir, run.records, None)
        return run
    config = read_config(workdir)
    run.recipe = config.name or None
    run.source = config.source or None
    run.model = config.model.name
    run.keep_best = config.checkpoint.keep_best
    run.quant = config.quant if config.quant.mode == "qat" else None
    run.exports = _read_exports(workdir)
    run.other_data = other_data(workdir, run.records, config.model.num_classes)
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


def _read_exports(workdir: Path) -> list[dict]:
    """The records of WORKDIR/exports.jsonl ([] without one); a line that is not a JSON object
    is skipped with a warning, as the report shows what it can."""
    path = workdir / EXPORTS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and "file" in record:
            records.append(record)
        elif line.strip():
            warnings.warn(f"{path}:{number}: not an export record, skipped", stacklevel=2)
    return records


def _quant_lines(run: Run) -> list[str]:
    """What a quantization-aware run is, and the top-1 of its int8 exports beside its network's."""
    lines = []
    if run.quant is not None:
        q = run.quant
        lines.append(f"- Quantization-aware training (quant.mode=qat): {q.weight_dtype} weights "
                     f"({'per channel' if q.per_channel_weights else 'per tensor'}) and {q.activation_dtype} "
                     f"activations ({q.activation_calibration} ranges) fake-quantized in every step; its "
                     "evaluations are the fake-quantized network's")
    for e in run.exports:
        kind = "float32"
        if e.get("int8"):
            kind = "int8, the ranges learned in training" if e.get("qat") else "int8, post-training quantization"
        size = f", {e['mib']:.2f} MiB" if _is_number(e.get("mib")) else ""
        line = f"- LiteRT export `{e['file']}` ({kind}{size})"
        held = e.get("held_out")
        if isinstance(held, dict) and _is_number(held.get("file_top1")) and _is_number(held.get("jax_top1")):
            network = "fake-quantized network" if e.get("qat") else "float network"
            diff = 100.0 * (held["file_top1"] - held["jax_top1"])
            line += (f": top-1 on {held.get('images', '?')} images of `{held.get('data', '?')}`: "
                     f"{_pct(held['file_top1'])}% for the file, {_pct(held['jax_top1'])}% for the run's "
                     f"{network} ({diff:+.2f} points)")
        else:
            line += ": no accuracy measured (`flaxnets export --check-data DIR` measures it)"
        lines.append(line)
    return lines


def _pct(v) -> str:
    return f"{100.0 * v:.2f}" if _is_number(v) else "-"


def _epoch(v) -> str:
    return f"{v:g}" if float(v) != int(v) else str(int(v))


def _best(evals: list[dict], key: str) -> dict | None:
    # Ties go to the later evaluation, as Orbax's best-checkpoint policy (a stable sort, the
    # last kept) breaks them; a step evaluated again after a resume counts by its newer record.
    latest = {int(r["step"]): r for r in evals if _is_number(r.get(key))}
    return max(latest.values(), key=lambda r: (r[key], r["step"])) if latest else None


def _summary(run: Run) -> dict:
    evals = run.evaluations()
    final = evals[-1] if evals else None
    return {
        "final": final,
        # `eval --checkpoint best` restores the latest checkpoint when none was kept as best.
        "best": _best(evals, BEST_METRIC) if run.keep_best else final,
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
        published = f"- Published top-1: {_pct(run.published_top1)}% on {PUBLISHED_DATA}"
        best = s["best"]
        if run.other_data is not None:
            published += f"; not compared: {run.other_data}"
        elif best is not None:
            # Recipes with EMA publish the EMA weights' accuracy: the best checkpoint holds both
            # weights, so compare the better of its two figures.
            ours, which = max((best[k], which) for k, which in (("eval_top1", "raw"), ("eval_ema_top1", "EMA"))
                              if _is_number(best.get(k)))
            diff = 100.0 * (ours - run.published_top1)
            published += (f"; ours (best checkpoint, step {int(best['step'])}, {which} weights) "
                          f"{_pct(ours)}% ({diff:+.2f} points)")
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
    best_line = _figure_line("Best", s["best"], "eval_top1", "eval_top5")
    if s["best"] is not None:
        best_line += (", the checkpoint `flaxnets eval --checkpoint best` restores" if run.keep_best else
                      "; checkpoint.keep_best is off, so `flaxnets eval --checkpoint best` restores the latest")
    lines.append(best_line)
    if s["best_ema"] is not None:
        lines.append(_figure_line("Final (EMA)", s["final"], "eval_ema_top1", "eval_ema_top5"))
        lines.append(_figure_line("Best (EMA)", s["best_ema"], "eval_ema_top1", "eval_ema_top5"))
    lines += _quant_lines(run)
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
            _pct(run.published_top1) + (" (other data)" if run.other_data and run.published_top1 else ""),
        ]) + " |")
    return lines


def set_learning_rate_scale(ax, values) -> str:
    """Put the learning rates `values` on a logarithmic y axis and return its scale's name.

    Learning rates span decades (a warmup from about 0, an exponential decay, runs at batch 256
    beside batch 4096): on a linear axis the small ones lie flat on zero. A schedule that is
    exactly 0 somewhere (a warmup's first step, a cosine's end) gets a symmetric-log axis that is
    linear only below its smallest positive value, so the zero shows and nothing else is flattened."""
    values = [float(v) for v in values if math.isfinite(v)]
    positive = [v for v in values if v > 0]
    if not positive or len(positive) < len(values) and min(values) < 0:
        return ax.get_yscale()  # nothing to take a logarithm of
    if len(positive) == len(values):
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=min(positive))
    return ax.get_yscale()


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
        drawn, plotted = 0, []
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
                plotted += ys
        if not drawn:
            ax.text(0.5, 0.5, "no data logged", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend()
        if kind == "learning_rate" and plotted:
            set_learning_rate_scale(ax, plotted)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / PLOT_FILES[kind]
        fig.savefig(path, format="png")
        plt.close(fig)
        paths[kind] = path
    if any(r.get("stage") is not None for run in runs for r in run.records):
        paths["progressive"] = _plot_stages(runs, out_dir, plt)
    return paths


def _plot_stages(runs: list[Run], out_dir: Path, plt) -> Path:
    """progressive.png: each run's stage values as steps against the training step (image size
    on top; RandAugment magnitude, Mixup / CutMix alpha and dropout below), held to the last step."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=100, sharex=True)
    for i, run in enumerate(runs):
        stages = [r for r in run.records if r.get("stage") is not None]
        if not stages:
            continue
        last = max(int(r["step"]) for r in run.records)
        steps = [int(r["step"]) for r in stages] + [last]
        for ax, key, style in [(top, "image_size", "-")] + [(bottom, k, s) for k, s in
                                                          zip(STAGE_KEYS[1:], ("-", "--", ":", "-."))]:
            values = [r.get(key) for r in stages]
            if not all(_is_number(v) for v in values):
                continue
            label = run.label if key == "image_size" else f"{run.label} {key}"
            ax.step(steps, values + values[-1:], style, where="post", color=f"C{i % 10}", label=label)
    top.set_title("Progressive learning: image size and regularisation by stage")
    top.set_ylabel("image size (pixels)")
    bottom.set_ylabel("value")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    path = out_dir / STAGE_PLOT_FILE
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _labels(workdirs: list[Path]) -> list[str]:
    # Legend names are the directory names; identical names get their parent prepended.
    names = [w.resolve().name for w in workdirs]
    return [str(Path(w.resolve().parent.name) / n) if names.count(n) > 1 else n
            for w, n in zip(workdirs, names)]


def default_out_dir(workdirs) -> Path:
    """Where `flaxnets report` writes when not told: WORKDIR/report for one work directory; for
    several, `report-A-vs-B` beside them (in their common parent directory, else the first one's
    parent), so a comparison neither lands in whatever directory the command ran from nor
    overwrites a single run's report."""
    workdirs = [Path(w) for w in workdirs]
    if len(workdirs) == 1:
        return workdirs[0] / "report"
    resolved = [w.resolve() for w in workdirs]
    parent = Path(os.path.commonpath(resolved))
    if parent == Path(parent.anchor):
        parent = resolved[0].parent
    labels = [label.replace(os.sep, "_") for label in _labels(workdirs)]
    name = "report-" + "-vs-".join(labels)
    if len(name) > 100:
        name = f"report-{labels[0]}-and-{len(labels) - 1}-more"
    return parent / name


def write_report(workdirs, out_dir) -> Path:
    """Writes report.md and loss / accuracy / learning-rate PNG plots (and, for a progressive-
    learning run, progressive.png: image size and regularisation against the step) for one or more
    work directories into `out_dir` (created if needed); returns the Markdown file's path.

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
