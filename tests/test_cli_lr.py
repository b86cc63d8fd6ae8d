"""`flaxnets lr` and `flaxnets recipes` through the CLI entry point."""

import math

import pytest

from flaxnets.cli import main


def test_lr_prints_efficientnet_b0_schedule_at_batch_2048(capsys):
    steps = [0, 1000, 3126, 3127, 4505, 100_000]
    assert main(["lr", "efficientnet_b0_tpu", "--set", "train.global_batch_size=2048",
                 "--steps", ",".join(map(str, steps))]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    spe = 1_281_167 / 2048
    warmup = int(5 * spe)
    for line, step in zip(lines, steps, strict=True):
        got_step, value = line.split()
        expected = 0.128 * step / warmup if step < warmup else 0.128 * 0.97 ** math.floor(step / (2.4 * spe))
        assert int(got_step) == step
        assert float(value) == pytest.approx(expected, rel=1e-5)


def test_lr_batch_override_rescales_peak(capsys):
    assert main(["lr", "efficientnet_b0_tpu", "--set", "train.global_batch_size=4096", "--steps", "1562"]) == 0
    step, value = capsys.readouterr().out.split()
    assert float(value) == pytest.approx(0.256 * 1562 / int(5 * 1_281_167 / 4096), rel=1e-5)


def test_lr_unknown_key_exits_2_with_suggestion(capsys):
    assert main(["lr", "efficientnet_b0_tpu", "--set", "schedule.base_rl=0.1", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "schedule.base_rl" in err and "did you mean 'schedule.base_lr'" in err
    assert "Traceback" not in err


def test_lr_bad_steps_and_nothing_to_do(capsys):
    assert main(["lr", "digits_demo", "--steps", "1,x"]) == 2
    assert main(["lr", "efficientnet_b0_tpu"]) == 2
    assert main(["lr", "digits_demo", "--steps", "1"]) == 2  # data size unknown
    assert "--num-train-examples" in capsys.readouterr().err


def test_lr_plot_writes_png(tmp_path):
    out = tmp_path / "lr.png"
    assert main(["lr", "digits_demo", "--num-train-examples", "1437", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipes_lists_name_model_epochs_batch_top1(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("efficientnet_b0_tpu "))
    assert row.split() == ["efficientnet_b0_tpu", "efficientnet_b0", "350", "2048", "77.1"]


def test_lr_plot_says_what_it_wrote_on_a_symlog_axis(tmp_path, capsys, monkeypatch):
    """`lr --plot` names the file it wrote; the digits warmup starts at exactly 0, so the axis is
    symmetric-log (a linear one flattens the warmup and the decay's tail)."""
    from matplotlib.figure import Figure

    scales, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (scales.append(fig.axes[0].get_yscale()), save(fig, *a, **k))[1])
    out = tmp_path / "lr.png"
    assert main(["lr", "digits_demo", "--num-train-examples", "1437", "--plot", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (learning rate over 220 steps, symlog y axis)\n"
    assert scales == ["symlog"]
