"""Metric writers: JSON lines, TensorBoard events, truncation on resume; the progress bar."""

import io
import json

from flaxnets.train.metrics import MetricWriter, truncate_metrics
from flaxnets.train.progress import ProgressBar, format_duration


def read_metrics(workdir):
    """Every record of WORKDIR/metrics.jsonl, in order."""
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_writes_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(1, {"epoch": 0, "train_loss": 2.5, "learning_rate": 0.1})
    writer.write(2, {"epoch": 0, "train_loss": float("nan")})
    writer.close()
    records = read_metrics(tmp_path)
    assert records[0] == {"step": 1, "epoch": 0, "train_loss": 2.5, "learning_rate": 0.1}
    assert records[1]["train_loss"] == "nan"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_truncates_lines_after_the_restored_step(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    for step in range(1, 6):
        writer.write(step, {"train_loss": float(step)})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "train_lo')  # a line cut short by a crash
    writer = MetricWriter(tmp_path, resume_step=3, tensorboard=False)
    writer.write(4, {"train_loss": 40.0})
    writer.close()
    assert [(r["step"], r["train_loss"]) for r in read_metrics(tmp_path)] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_fresh_run_starts_a_new_file_and_inactive_writer_writes_nothing(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 9}) + "\n")
    MetricWriter(tmp_path, tensorboard=False).close()
    assert read_metrics(tmp_path) == []
    other = tmp_path / "other"
    writer = MetricWriter(other, active=False)
    writer.write(1, {"train_loss": 1.0})
    writer.close()
    assert not other.exists()
    assert truncate_metrics(other / "metrics.jsonl", 3) == 0


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_line_mode_and_tty_mode():
    out = io.StringIO()
    bar = ProgressBar(10, images_per_step=32, stream=out, every=5)
    for step in range(1, 11):
        bar.update(step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "step 5/10" in lines[0] and "step 10/10" in lines[1]
    assert "img/s" in lines[0] and "eta" in lines[0]

    tty = _Tty()
    bar = ProgressBar(10, stream=tty)
    bar.update(1)
    bar.update(2)
    bar.message("eval_top1 0.5")
    bar.close()
    text = tty.getvalue()
    assert text.startswith("\r") and text.count("\r") == 2 and "\neval_top1 0.5\n" in text


def test_format_duration():
    assert format_duration(59) == "0:59"
    assert format_duration(3725) == "1:02:05"


def test_progress_in_a_log_file_is_printed_at_least_once_a_minute():
    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar(1000, stream=out, every=100, clock=lambda: now[0])
    for step in range(1, 8):
        now[0] += 25.0  # a slow run: 25 s per step, far from the next multiple of 100
        bar.update(step)
    steps = [line.split("step ")[1].split("/")[0] for line in out.getvalue().splitlines()]
    assert steps == ["3", "6"]  # 75 s and 150 s: no silence of a minute or more after a line


def test_progress_rate_and_eta_leave_out_the_compiling_first_step_and_paused_time():
    """Issue 21: a 60 s compile and a 30 s evaluation do not count in the rate or the ETA, and
    there is no ETA before a step after the first has been timed."""
    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar(100, images_per_step=10, stream=out, every=1, first_step_compiles=True,
                      clock=lambda: now[0])
    now[0] = 60.0  # the first step compiles for a minute
    bar.update(1)
    assert "step 1/100 ? img/s elapsed 1:00 eta ?" in out.getvalue()
    for step in (2, 3):
        now[0] += 0.5
        bar.update(step)
    with bar.paused():  # an evaluation
        now[0] += 30.0
    now[0] += 0.5
    bar.update(4)  # 3 steps in 1.5 s of training: 2 steps/s, 20 img/s; 96 steps left: 48 s
    assert out.getvalue().splitlines()[-1] == (
        "[........................] step 4/100 20 img/s elapsed 1:32 eta 0:48")


def test_a_training_process_does_not_import_torch(tmp_path):
    """tensorboardX imports PyTorch when it is installed (1.2 s of the 2.2 s a training process
    spent importing flaxnets.train.loop); the writer takes it without, and still writes
    TensorBoard events."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import flaxnets.commands.train, flaxnets.train.loop; "
            "from flaxnets.train.metrics import MetricWriter; "
            f"w = MetricWriter({str(tmp_path)!r}); w.write(1, {{'train_loss': 1.0}}); w.close(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(src)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout[-2000:]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
