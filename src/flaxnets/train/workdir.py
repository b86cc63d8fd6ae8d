"""A training work directory's files: their names, and the one place each is written and read.

WORKDIR/
  config.json        the resolved `flaxnets.config.Config` of the run
  class_names.json   the training data's class names in label order
  metrics.jsonl      one JSON object per logged step (`flaxnets.train.metrics.MetricWriter`)
  summary.txt        the start-of-run summary the loop prints
  checkpoints/       Orbax checkpoints (`flaxnets.train.checkpoint`)
  tensorboard/       TensorBoard event files

Kept free of JAX so that `flaxnets report` reads a run without importing it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from flaxnets.config import Config
from flaxnets.errors import FlaxnetsError, UsageError

CONFIG_FILE = "config.json"
#: The training data's class names in label order (folder names, or a records manifest's map),
#: so `flaxnets predict --workdir` can name the classes of a run that is not ImageNet.
CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.jsonl"
#: What `flaxnets export --format tflite` of the run wrote (one JSON object per line: the file,
#: int8 or not, quantization-aware or not, its size and the top-1 `--check-data` measured), read
#: by `flaxnets report`.
EXPORTS_FILE = "exports.jsonl"
SUMMARY_FILE = "summary.txt"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


def check_workdir(workdir) -> Path:
    """A one-line error if `workdir` could not be used, creating nothing: it must be a directory
    (a new one, or an existing run's) whose nearest existing ancestor is writable. The run
    creates it (`create_workdir`) only once its data and devices have been checked, so a bad
    --data or batch size leaves no empty work directory behind."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise FlaxnetsError(f"--workdir {str(workdir)!r} is a file; expected a directory (a new one, or an existing run's)")
    existing = workdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FlaxnetsError(f"--workdir {str(workdir)!r} is not writable: {str(existing)!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FlaxnetsError(f"--workdir {str(workdir)!r} is not writable: permission denied in {str(existing)!r}")
    return workdir


def create_workdir(workdir) -> Path:
    """Create `workdir` (checked by `check_workdir`) if needed and make sure it can be written."""
    workdir = check_workdir(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise FlaxnetsError(f"--workdir {str(workdir)!r} is not writable: {e.strerror or e}") from None
    return workdir


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def sync_config(workdir: Path, config: Config, *, resuming: bool, allow_config_change: bool, write: bool) -> None:
    """Refuse to resume a run whose config.json differs from `config` (unless
    `allow_config_change`), then write `config` as config.json when `write`."""
    path = Path(workdir) / CONFIG_FILE
    new = config.to_dict()
    if resuming and path.exists():
        old = json.loads(path.read_text())
        # Keys added since the run was written (a new section such as `quant`) take their
        # defaults, which keep the old behaviour: they are no change.
        with contextlib.suppress(UsageError):
            old = Config.from_dict(old).to_dict()
        changes = _config_differences(old, new)
        if changes and not allow_config_change:
            shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
            raise FlaxnetsError(
                f"{workdir} holds a run with a different config ({shown}); "
                "use another --workdir, or --allow-config-change to resume anyway")
    if write:
        _write_atomically(path, json.dumps(new, indent=2) + "\n")


def read_config(workdir) -> Config:
    """The run's Config from WORKDIR/config.json; a one-line error when there is none or it is
    not a flaxnets config."""
    workdir = Path(workdir)
    path = workdir / CONFIG_FILE
    if not path.is_file():
        raise FlaxnetsError(f"--workdir {str(workdir)!r} holds no {CONFIG_FILE}; expected a `flaxnets train` work directory")
    try:
        return Config.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise FlaxnetsError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UsageError as e:
        raise FlaxnetsError(f"{path}: not a flaxnets config ({e})") from None


def write_class_names(workdir, names) -> None:
    """Record the training data's class names (nothing when the source has none)."""
    if names:
        _write_atomically(Path(workdir) / CLASS_NAMES_FILE, json.dumps([str(n) for n in names]) + "\n")


def read_class_names(workdir, num_classes: int) -> list[str] | None:
    """The recorded class names when there are `num_classes` of them, else None."""
    path = Path(workdir) / CLASS_NAMES_FILE
    if not path.is_file():
        return None
    names = json.loads(path.read_text())
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    return None


def write_summary(workdir, text: str) -> None:
    """Write the start-of-run summary (replacing a previous segment's)."""
    _write_atomically(Path(workdir) / SUMMARY_FILE, text.rstrip("\n") + "\n")
