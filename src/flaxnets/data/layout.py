"""The layout a training run's data must have: DATA/train/<class>/... and DATA/val/<class>/...
(or `flaxnets prepare` output with train/ and val/ manifests), held-out images apart from the
training ones, and at least two classes to tell apart.

`open_source(path, split)` reads `path` itself when `path/split` does not exist, which is what
`flaxnets eval --data DIR/val` wants; for training it would quietly train on DIR's class folders
and evaluate on the same images, or, with train/ but no val/, take train/ for a class folder of
the validation data. `check_training_layout` refuses those before anything is read or built.
"""

from __future__ import annotations

import os
from pathlib import Path

from flaxnets.data.records import MANIFEST, RecordSource
from flaxnets.data.sources import _class_folders, split_folder
from flaxnets.errors import FlaxnetsError

EXPECTED = "expected DATA/train/<class>/... and DATA/val/<class>/... (or `flaxnets prepare` output)"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")


def _training_classes(folder: Path) -> list[str] | None:
    """The class names of a training split folder, read cheaply (no image listing); None for a
    flat folder, whose classes come from its ground truth."""
    if (folder / MANIFEST).is_file():
        return RecordSource(folder).class_names
    return _class_folders(folder) or None


def training_paths(data, data_dir) -> tuple:
    """(training path, held-out path) of a run on `data_dir` as `data` (a `DataConfig`) asks, after
    `check_training_layout`: `data.train_source` / `data.eval_source` where set, else `data_dir`
    (whose train/ and val/ splits the loaders open). The one reader of those two keys."""
    check_training_layout(data_dir, train_source=data.train_source, eval_source=data.eval_source)
    return data.train_source or data_dir, data.eval_source or data_dir


def check_training_layout(data_dir, *, train_source=None, eval_source=None) -> None:
    """A one-line FlaxnetsError unless training can read a training split and a separate
    held-out split: `data_dir`/train and `data_dir`/val, or `train_source` / `eval_source`
    (`data.train_source` / `data.eval_source`) in their place. The training split needs at
    least two classes."""
    root = Path(data_dir)
    if (train_source is None or eval_source is None) and root.is_dir():
        has_train, has_val = (root / "train").is_dir(), (root / "val").is_dir()
        if not has_train and not has_val:
            if (root / MANIFEST).is_file():
                found = "one prepared split (a record manifest)"
            elif _class_folders(root):
                found = f"class folders ({_listed(_class_folders(root))})"
            else:
                found = "no train/ or val/ folder"
            raise FlaxnetsError(
                f"--data {str(root)!r} holds {found}, not train/ and val/: training would evaluate on its own "
                f"training images; {EXPECTED.replace('DATA', str(root))}")
        if train_source is None and not has_train:
            raise FlaxnetsError(
                f"--data {str(root)!r} has val/ but no train/; expected the training images in "
                f"{root / 'train'}/<class>/... (or set data.train_source)")
        if eval_source is None and not has_val:
            raise FlaxnetsError(
                f"--data {str(root)!r} has train/ but no val/: no held-out images to evaluate on; expected "
                f"{root / 'val'}/<class>/... with the same class folder names (or set data.eval_source)")
    train_folder = split_folder(train_source or root, "train")
    eval_folder = split_folder(eval_source or root, "val")
    if os.path.realpath(train_folder) == os.path.realpath(eval_folder):
        raise FlaxnetsError(
            f"the training and evaluation data are the same folder {str(train_folder)!r}: the run would "
            "evaluate on its own training images; point data.eval_source (or --data's val/) at held-out images")
    classes = _training_classes(train_folder)
    if classes is not None and len(classes) < 2:
        raise FlaxnetsError(
            f"{train_folder}: the training data has one class ({classes[0]!r}); a classifier needs at "
            "least two classes, one folder each")
