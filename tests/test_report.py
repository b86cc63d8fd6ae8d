"""`flaxnets report`: results table, best markers, plots, comparisons and bad input."""

import json

import pytest

from flaxnets.cli import main
from flaxnets.config import Config, ModelConfig
from flaxnets.errors import FlaxnetsError
from flaxnets.imagenet import imagenet_synsets
from flaxnets.report import PLOT_FILES, read_metrics, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Evaluations at epochs 1..4: raw top-1 peaks at epoch 3, EMA top-1 at epoch 4.
EVALS = {
    1: dict(eval_top1=0.40, eval_top5=0.70, eval_ema_top1=0.30, eval_ema_top5=0.60),
    2: dict(eval_top1=0.60, eval_top5=0.80, eval_ema_top1=0.50, eval_ema_top5=0.75),
    3: dict(eval_top1=0.7442, eval_top5=0.9212, eval_ema_top1=0.60, eval_ema_top5=0.80),
    4: dict(eval_top1=0.7409, eval_top5=0.9200, eval_ema_top1=0.6152, eval_ema_top5=0.85),
}


def run_config(recipe, model="mobilenet_v3_large", **fields):
    """config.json's content as the trainer writes it: a resolved Config."""
    return Config(name=recipe, model=ModelConfig(name=model), **fields).to_dict()


def write_run(workdir, evals=EVALS, config=None, trailer="", class_names="imagenet", eval_count=50000):
    """A work directory with two train-log lines per epoch and an evaluation at each epoch end,
    by default on ImageNet-1k (its synsets as class_names.json, 50,000 images per evaluation)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if class_names is not None:
        names = imagenet_synsets() if class_names == "imagenet" else class_names
        (workdir / "class_names.json").write_text(json.dumps(names))
    lines = []
    for epoch in sorted(evals):
        lines.append({"step": epoch * 10 - 5, "epoch": epoch - 0.5, "train_loss": 5.0 / epoch,
                      "learning_rate": 0.004 / epoch, "images_per_second": 100.0})
        lines.append({"step": epoch * 10, "epoch": epoch, "train_loss": 4.5 / epoch,
                      "learning_rate": 0.0035 / epoch, **evals[epoch], "eval_count": eval_count})
    text = "".join(json.dumps(line) + "\n" for line in lines) + trailer
    (workdir / "metrics.jsonl").write_text(text)
    if config is not None:
        (workdir / "config.json").write_text(json.dumps(config))
    return workdir


def table_rows(markdown):
    """Data rows of the per-run results table (the one whose header starts with Epoch)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Epoch |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return lines[start], rows


def test_table_rows_percentages_and_best_markers(tmp_path):
    # The shape of the trainer's resolved Config: the recipe's name at the top level.
    run = write_run(tmp_path / "mnv3", config=run_config("mobilenet_v3_large_tfvision",
                                                         source="TF-Vision Model Garden"))
    path = write_report([run], tmp_path / "out")
    text = path.read_text()
    header, rows = table_rows(text)
    assert header == "| Epoch | Step | Top-1 | Top-5 | EMA Top-1 | EMA Top-5 | Images | Note |"
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[2][:6] == ["3", "30", "74.42", "92.12", "60.00", "80.00"]
    assert rows[0][6] == "50000"
    notes = {r[0]: r[7] for r in rows}
    assert notes == {"1": "", "2": "", "3": "best", "4": "best EMA, final"}
    assert "- Best: top-1 74.42%, top-5 92.12% (epoch 3, step 30)" in text
    assert "- Final: top-1 74.09%, top-5 92.00% (epoch 4, step 40)" in text
    assert "- Best (EMA): top-1 61.52%" in text
    assert "- Recipe: mobilenet_v3_large_tfvision (model mobilenet_v3_large)" in text
    assert "- Source: TF-Vision Model Garden" in text
    assert ("Published top-1: 75.70% on ImageNet-1k; ours (best checkpoint, step 30, raw weights) "
            "74.42% (-1.28 points)") in text


def test_pngs_written_and_linked(tmp_path):
    run = write_run(tmp_path / "run")
    path = write_report([run], tmp_path / "out")
    text = path.read_text()
    for name in PLOT_FILES.values():
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5000  # axes, curves and legend, not an empty canvas
        assert f"]({name})" in text


def test_missing_config_and_missing_values_tolerated(tmp_path):
    # Raw weights only, one evaluation without top-5: no EMA columns, "-" for the gap.
    evals = {1: dict(eval_top1=0.5), 2: dict(eval_top1=0.55, eval_top5=0.8)}
    run = write_run(tmp_path / "run", evals=evals)
    text = write_report([run], tmp_path / "out").read_text()
    header, rows = table_rows(text)
    assert "EMA" not in header
    assert rows[0] == ["1", "10", "50.00", "-", "50000", ""]
    assert rows[1][-1] == "best, final"
    assert "Recipe: unknown" in text
    assert "no config.json" in text


def test_several_workdirs_compared(tmp_path):
    a = write_run(tmp_path / "a" / "tfvision", config=run_config("mobilenet_v3_large_tfvision"))
    better = {k: {**v, "eval_top1": v["eval_top1"] + 0.01} for k, v in EVALS.items()}
    b = write_run(tmp_path / "b" / "paper", evals=better, config=run_config("mobilenet_v3_large_paper"))
    text = write_report([a, b], tmp_path / "out").read_text()
    comparison = [line for line in text.splitlines() if line.startswith("| tfvision") or line.startswith("| paper")]
    assert comparison[0].split(" | ")[:4] == ["| tfvision", "mobilenet_v3_large_tfvision", "4", "74.42"]
    assert comparison[1].split(" | ")[:4] == ["| paper", "mobilenet_v3_large_paper", "4", "75.42"]
    assert comparison[0].endswith("| 75.70 |")
    assert "## tfvision" in text and "## paper" in text
    for name in PLOT_FILES.values():
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG_SIGNATURE)


def test_same_named_workdirs_get_distinct_legend_names(tmp_path):
    a = write_run(tmp_path / "x" / "run")
    b = write_run(tmp_path / "y" / "run")
    text = write_report([a, b], tmp_path / "out").read_text()
    assert "## x/run" in text and "## y/run" in text


def test_corrupt_trailing_line_skipped_with_warning(tmp_path):
    run = write_run(tmp_path / "run", trailer='{"step": 50, "epoch": 5, "train_lo')
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:9: skipping a corrupt last line"):
        records = read_metrics(run / "metrics.jsonl")
    assert len(records) == 8 and records[-1]["step"] == 40


def test_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path):
    run = write_run(tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-3]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(FlaxnetsError, match=r"metrics\.jsonl:3: not valid JSON"):
        write_report([run], tmp_path / "out")


def test_line_without_epoch_is_an_error(tmp_path):
    run = write_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "train_loss": 1.0}\n{"step": 100, "epoch": 10}\n')
    with pytest.raises(FlaxnetsError, match=r"metrics\.jsonl:9: missing or non-numeric 'epoch'"):
        read_metrics(run / "metrics.jsonl")


def test_cli_default_out_and_errors(tmp_path, capsys, monkeypatch):
    run = write_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "report.md").is_file()
    assert (run / "report" / "loss.png").is_file()

    # Several runs: beside them, not in the directory the command runs from.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    other = write_run(tmp_path / "other")
    capsys.readouterr()
    assert main(["report", str(run), str(other)]) == 0
    out_dir = tmp_path / "report-run-vs-other"
    assert (out_dir / "report.md").is_file() and (out_dir / "learning_rate.png").is_file()
    assert list(cwd.iterdir()) == []
    assert f"wrote {out_dir / 'report.md'} and loss.png, accuracy.png, learning_rate.png in {out_dir}" in capsys.readouterr().out
    # --out still wins.
    assert main(["report", str(run), str(other), "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "report.md").is_file()

    capsys.readouterr()
    assert main(["report", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing: no such work directory" in err

    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "metrics.jsonl: no such metrics file" in capsys.readouterr().err


def test_bundled_recipe_published_top1_used_when_config_has_none(tmp_path):
    paper = write_run(tmp_path / "paper", config=run_config("mobilenet_v3_large_paper"))
    mnv4 = write_run(tmp_path / "mnv4", config=run_config("mobilenet_v3_large_mnv4_setup"))
    text = write_report([paper, mnv4], tmp_path / "out").read_text()
    paper_section = text[text.index("## paper"):text.index("## mnv4")]
    mnv4_section = text[text.index("## mnv4"):]
    assert ("Published top-1: 75.20% on ImageNet-1k; ours (best checkpoint, step 30, raw weights) "
            "74.42% (-0.78 points)") in paper_section
    # No source reports this model with this setup: none is invented from the model's figure.
    assert "Published top-1: not known for this recipe" in mnv4_section


def test_other_data_is_not_compared_with_the_published_figure(tmp_path):
    """A recipe trained on the user's 4-class folder: the published ImageNet figure is shown but
    no "-50 points" difference (issue 21); a subset of ImageNet's validation images, or a run
    whose model is not 1000-class and that recorded no class names, is not compared either."""
    config = run_config("mobilenet_v3_large_tfvision")
    photos = write_run(tmp_path / "photos", config=config, class_names=["cat", "dog", "fox", "owl"], eval_count=40)
    text = write_report([photos], tmp_path / "out").read_text()
    assert ("- Published top-1: 75.70% on ImageNet-1k; not compared: its data is not ImageNet-1k "
            "(4 classes: cat, dog, fox, owl)") in text
    assert "points" not in text

    subset = write_run(tmp_path / "subset", config=config, eval_count=10000)
    text = write_report([subset], tmp_path / "out2").read_text()
    assert "not compared: it was evaluated on 10,000 images, not ImageNet-1k's 50,000 validation images" in text

    four = run_config("mobilenet_v3_large_tfvision", model="mobilenet_v3_large")
    four["model"]["num_classes"] = 4
    unnamed = write_run(tmp_path / "unnamed", config=four, class_names=None)
    imagenet = write_run(tmp_path / "imagenet", config=config)
    text = write_report([unnamed, imagenet], tmp_path / "out3").read_text()
    assert "not compared: its model has 4 classes, ImageNet-1k has 1,000" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| unnamed") or line.startswith("| imagenet")}
    assert rows["| unnamed"].endswith("| 75.70 (other data) |")
    assert rows["| imagenet"].endswith("| 75.70 |")
    assert "ours (best checkpoint, step 30, raw weights) 74.42% (-1.28 points)" in text

    # No class names, but the evaluation counted ImageNet's 50,000 images with a 1000-class model.
    old = write_run(tmp_path / "old", config=config, class_names=None)
    assert "(-1.28 points)" in write_report([old], tmp_path / "out4").read_text()


def _best_line_step(text):
    line = next(line for line in text.splitlines() if line.startswith("- Best: "))
    return int(line.split("step ")[1].split(")")[0]), line


def test_report_best_is_the_checkpoint_eval_best_restores(tmp_path):
    """The report's "best" row and `flaxnets eval --checkpoint best` name the same step on a run
    where raw top-1 ties (steps 20 and 30), the EMA peaks elsewhere (step 40) and the last
    evaluation is not the best: checkpoints saved as the training loop saves them (LatestN 1 +
    BestN by raw top-1) and the step chosen by the code `eval` runs (`restore._select_step`)."""
    import jax.numpy as jnp

    from flaxnets import report
    from flaxnets.train import checkpoint
    from flaxnets.train.restore import _select_step

    assert report.BEST_METRIC == checkpoint.BEST_METRIC
    evals = {1: dict(eval_top1=0.50, eval_ema_top1=0.40), 2: dict(eval_top1=0.75, eval_ema_top1=0.70),
             3: dict(eval_top1=0.75, eval_ema_top1=0.80), 4: dict(eval_top1=0.70, eval_ema_top1=0.90)}
    run = write_run(tmp_path / "run", evals=evals, config=run_config("mobilenet_v3_large_tfvision"))
    ckpt = checkpoint.Checkpointer(str(run), keep=1, async_save=False)
    for epoch, metrics in evals.items():
        ckpt.save(epoch * 10, {"w": jnp.full(3, float(epoch))}, metrics={"eval_top1": metrics["eval_top1"]})
    ckpt.close()

    reader = checkpoint.Checkpointer(str(run), keep=1, async_save=False, read_only=True)
    try:
        eval_best = _select_step(reader, "best", run)
    finally:
        reader.close()
    text = write_report([run], tmp_path / "out").read_text()
    step, line = _best_line_step(text)
    assert step == eval_best == 30, line
    assert line.endswith("the checkpoint `flaxnets eval --checkpoint best` restores")
    notes = {r[1]: r[-1] for r in table_rows(text)[1]}
    assert notes == {"10": "", "20": "", "30": "best", "40": "best EMA, final"}
    # The published comparison uses that checkpoint's better weights (EMA 80%), not step 40's EMA.
    assert "ours (best checkpoint, step 30, EMA weights) 80.00% (+4.30 points)" in text


def test_report_best_without_keep_best_is_the_latest(tmp_path):
    """With checkpoint.keep_best off, `eval --checkpoint best` restores the latest checkpoint
    (`Checkpointer.best_step`); the report says so instead of naming an evaluation nobody kept."""
    from flaxnets.config import CheckpointConfig

    run = write_run(tmp_path / "run", config=run_config("mobilenet_v3_large_tfvision",
                                                        checkpoint=CheckpointConfig(keep_best=False)))
    step, line = _best_line_step(write_report([run], tmp_path / "out").read_text())
    assert step == 40 and "checkpoint.keep_best is off" in line


def _saved_yscales(monkeypatch):
    """{file name: y-axis scale} of every figure matplotlib saves while the returned dict lives."""
    from matplotlib.figure import Figure

    scales, save = {}, Figure.savefig

    def spy(fig, fname, *args, **kwargs):
        scales[str(fname).rsplit("/", 1)[-1]] = fig.axes[0].get_yscale()
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return scales


def test_learning_rate_plot_is_logarithmic(tmp_path, monkeypatch):
    """Learning rates span decades (two runs 4x apart, a warmup near 0): a log axis, or symlog
    when a rate is exactly 0; the accuracy and loss plots stay linear."""
    scales = _saved_yscales(monkeypatch)
    a = write_run(tmp_path / "a")
    write_report([a], tmp_path / "out")
    assert scales == {"loss.png": "linear", "accuracy.png": "linear", "learning_rate.png": "log"}

    zero = write_run(tmp_path / "zero")
    with open(zero / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 0, "epoch": 0, "learning_rate": 0.0}) + "\n")
    write_report([a, zero], tmp_path / "out2")
    assert scales["learning_rate.png"] == "symlog"


def test_qat_run_and_its_exports(tmp_path):
    """A quant.mode=qat run says so; each LiteRT export recorded in exports.jsonl shows its file
    and, where `--check-data` measured it, the file's top-1 beside the run's network's; a float
    run without exports shows neither; a broken record is skipped with a warning."""
    from flaxnets.config import QuantConfig

    qat = write_run(tmp_path / "qat", config=run_config("digits_demo", quant=QuantConfig(mode="qat")),
                    class_names=None)
    records = [
        {"file": "/x/qat_int8.tflite", "format": "tflite", "int8": True, "qat": True, "mib": 1.757,
         "held_out": {"data": "/d/val", "images": 360, "file_top1": 353 / 360, "jax_top1": 352 / 360}},
        {"file": "/x/qat.tflite", "format": "tflite", "int8": False, "qat": False, "mib": 6.5, "held_out": None},
    ]
    (qat / "exports.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    with pytest.warns(UserWarning, match=r"exports.jsonl:3: not an export record, skipped"):
        text = write_report(qat, tmp_path / "out").read_text()
    assert ("- Quantization-aware training (quant.mode=qat): int8 weights (per channel) and int8 activations "
            "(minmax ranges) fake-quantized in every step; its evaluations are the fake-quantized network's") in text
    assert ("- LiteRT export `/x/qat_int8.tflite` (int8, the ranges learned in training, 1.76 MiB): top-1 on "
            "360 images of `/d/val`: 98.06% for the file, 97.78% for the run's fake-quantized network "
            "(+0.28 points)") in text
    assert ("- LiteRT export `/x/qat.tflite` (float32, 6.50 MiB): no accuracy measured "
            "(`flaxnets export --check-data DIR` measures it)") in text

    plain = write_run(tmp_path / "float", config=run_config("digits_demo"), class_names=None)
    text = write_report(plain, tmp_path / "out2").read_text()
    assert "Quantization-aware" not in text and "LiteRT" not in text
