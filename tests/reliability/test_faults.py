"""Faults and bad input: each gives a one-line message naming the cause and the documented exit
status, and a work directory that already holds a run is left byte-for-byte as it was."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reliab_helpers import PYTHON, SMALL, load_state, read_losses, start_train, train_env


def snapshot(workdir: Path) -> dict:
    """relative path -> sha256 of every file under `workdir`."""
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def run_cli(*args, devices: int = 1, timeout: float = 300):
    proc = subprocess.run([PYTHON, "-m", "flaxnets", "train", "--recipe", "digits_demo", *args],
                          capture_output=True, text=True, env=train_env(devices), timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def error_line(stderr: str) -> str:
    """The CLI's error: exactly one non-empty line, no traceback."""
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def existing_run(reference, tmp_path):
    """A copy of a finished run, to check that failed commands leave it untouched."""
    workdir = tmp_path / "existing"
    shutil.copytree(reference, workdir)
    return workdir


def _sets(*extra):
    out = []
    for s in SMALL + list(extra):
        out += ["--set", s]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["missing_data", "unknown_key", "bad_batch", "file_as_data", "changed_config"])
def test_bad_input_one_line_error_and_existing_run_untouched(fault, digits_dir, existing_run, tmp_path):
    before = snapshot(existing_run)
    data, sets, devices = str(digits_dir), _sets(), 1
    if fault == "missing_data":
        data = str(tmp_path / "no-such-dir")
        expect, words = 1, [data, "does not exist"]
    elif fault == "file_as_data":
        data = str(tmp_path / "a-file")
        Path(data).write_text("")
        expect, words = 1, [data, "not a readable directory"]
    elif fault == "changed_config":  # resuming the run with another learning rate
        sets = _sets("schedule.base_lr=0.001")
        expect, words = 1, [str(existing_run), "different config", "schedule.base_lr", "--allow-config-change"]
    elif fault == "unknown_key":
        sets = _sets("train.no_such_key=1")
        expect, words = 2, ["no_such_key"]
    else:  # 30 examples cannot be split over 4 devices
        sets, devices = _sets("train.global_batch_size=30"), 4
        expect, words = 1, ["global_batch_size=30", "not divisible", "4 devices"]
    rc, out, err = run_cli("--data", data, "--workdir", str(existing_run), *sets, devices=devices)
    assert rc == expect, (rc, out, err)
    line = error_line(err)
    for w in words:
        assert w in line, line
    assert snapshot(existing_run) == before, "a failed command changed the existing run's files"


@pytest.mark.slow
def test_unwritable_workdir(digits_dir, tmp_path):
    parent = tmp_path / "a-file"
    parent.write_text("")
    workdir = parent / "run"  # cannot be created even by root: its parent is a file
    rc, out, err = run_cli("--data", str(digits_dir), "--workdir", str(workdir), *_sets())
    assert rc == 1, (rc, out, err)
    assert str(workdir) in error_line(err) and "not writable" in err
    if os.geteuid() != 0:  # permission bits do not stop root
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        rc, out, err = run_cli("--data", str(digits_dir), "--workdir", str(ro / "run"), *_sets())
        assert rc == 1 and "not writable" in error_line(err), (rc, err)


@pytest.mark.slow
def test_diverging_loss_stops_with_one_line_and_keeps_checkpoints(digits_dir, tmp_path):
    workdir = tmp_path / "run"
    rc, out, err = run_cli("--data", str(digits_dir), "--workdir", str(workdir),
                           *_sets("schedule.base_lr=1e6", "checkpoint.every_steps=1"))
    assert rc == 1, (rc, out, err[-3000:])
    line = [l for l in err.splitlines() if "diverged" in l]
    assert len(line) == 1 and "Traceback" not in err, err[-3000:]
    assert "at step" in line[0] and ("last good checkpoint" in line[0] or "no checkpoint" in line[0])
    # Whatever was logged and saved before the divergence still reads back.
    for record in (workdir / "metrics.jsonl").read_text().splitlines():
        json.loads(record)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    for s in steps:
        assert load_state(workdir / "checkpoints" / str(s) / "state")["step"] == s
    if "last good checkpoint" in line[0]:
        assert f"step {steps[-1]})" in line[0]


@pytest.mark.slow
def test_corrupt_images_are_reported_and_skipped(digits_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(digits_dir, data)
    bad_val = sorted((data / "val").rglob("*.png"))[0]
    bad_val.write_bytes(b"not a png")
    bad_train = sorted((data / "train").rglob("*.png"))[::10]  # 144 of 1,437: some are in step 1-2
    for p in bad_train:
        p.write_bytes(bad_train[0].read_bytes()[:40])  # a cut-off PNG header
    workdir = tmp_path / "run"
    proc = start_train(data, workdir, "eval.every_steps=2", args=["--max-steps", "2"])
    rc = proc.wait(timeout=400)
    out = proc.log()
    assert rc == 0, out[-3000:]
    warned = [l for l in out.splitlines() if "skipping undecodable image" in l]
    assert any(bad_val.name in l for l in warned), out[-3000:]
    assert any(any(p.name in l for p in bad_train) for l in warned), out[-3000:]
    evals = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if "eval_count" in l]
    assert evals and evals[-1]["eval_count"] == 359  # 360 val images, one undecodable
    assert sorted(read_losses(workdir)) == [1, 2]
