"""benchmarks/accelerator_check.py: without an accelerator it exits 2 with one line and writes
nothing; `--dry-run` runs every section on tiny sizes on the CPU and records every row as
measured or skipped with a reason (timm is not installed here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flaxnets.models

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from loop_helpers import create_tiny_model  # noqa: E402  (the loop tests' tiny network)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accelerator_check.py"


def _run(*args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=900)


def test_without_an_accelerator_it_exits_2_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = _run("--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no accelerator" in lines[0] and "'cpu'" in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_dry_run_runs_every_section_on_the_cpu(tmp_path, monkeypatch, capsys):
    # In-process with the loop tests' tiny network for the train rows: a real network's train
    # step takes minutes to compile on 2 CPU cores, and the rows' plumbing is the same.
    monkeypatch.setattr(flaxnets.models, "create_model", create_tiny_model)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import accelerator_check

    out = tmp_path / "out"
    assert accelerator_check.main(["--dry-run", "--models", "mobilenet_v3_large", "--out", str(out),
                                   "--budget-s", "1200"]) == 0
    report = json.loads((out / "accelerator_check.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"train", "depthwise", "pipeline", "augment"}
    for name, rows in sections.items():
        for row in rows:
            assert "failed" not in row, (name, row)
    train = {row["name"]: row for row in sections["train"]}
    assert train["flaxnets mobilenet_v3_large"]["images_per_second"] > 0
    assert train["flaxnets mobilenet_v3_large + device augmentation"]["images_per_second"] > 0
    assert "skipped" in train["timm mobilenet_v3_large"]  # no timm / CUDA here: a stated reason
    assert all(row["lax_forward_backward_ms"] > 0 and row["max_abs_difference"] < 0.5
               for row in sections["depthwise"])
    assert {(row["cores"], row["augment_on"]) for row in sections["pipeline"]} >= {(1, "host"), (1, "device")}
    assert all(row["images_per_second"] > 0 for row in sections["pipeline"])
    for row in sections["augment"]:
        assert row["seconds_per_batch"] > 0 and row["pixels_differing"] == 0
    table = (out / "accelerator_check.md").read_text()
    assert "DRY RUN" in table and "## Device augmentation" in table and table in capsys.readouterr().out
