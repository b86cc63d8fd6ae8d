"""Random-access image sources: a folder per class, a flat folder plus ground truth, or packed
records. Every source has `len`, `source[i]` -> (encoded bytes, label), `num_classes`,
`class_names` and `name(i)` (a path for messages).

Class indices follow the sorted class names (folder names / WordNet synset ids), so the
ImageNet indices are the usual 0 = n01440764 ... 999 = n15075141.

Flat validation folder (ImageNet's `val/` as distributed, with files
`ILSVRC2012_val_00000001.JPEG` ...) needs ground truth, found in the split folder or its parent:

* `LOC_val_solution.csv` (the Kaggle copy): ``ImageId,PredictionString`` where the prediction
  string starts with the synset id; or
* `ILSVRC2012_validation_ground_truth.txt` from the devkit (one 1-based ILSVRC2012 ID per line,
  line k for the file numbered k) together with `ILSVRC2012_id_to_synset.txt`: one synset id per
  line, line k the synset of ILSVRC2012 ID k. It is the devkit's `meta.mat` written out::

      from scipy.io import loadmat
      rows = loadmat("meta.mat", squeeze_me=True)["synsets"]
      ids = dict(zip(rows["ILSVRC2012_ID"], rows["WNID"]))
      open("ILSVRC2012_id_to_synset.txt", "w").write("".join(ids[k] + "\\n" for k in range(1, 1001)))

The class list of a flat split comes from a sibling `train/` folder of class folders when there
is one (so indices agree with training), else from the sorted synsets of the ground truth.

`flaxnets prepare --val-tar ... --devkit ...` reads the devkit itself, with no file to write
(`flaxnets.data.imagenet_archives`).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path

import numpy as np

from flaxnets.data.records import MANIFEST, FileReader, RecordSource
from flaxnets.errors import FlaxnetsError
from flaxnets.text import noun, plural

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CSV_GROUND_TRUTH = "LOC_val_solution.csv"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_SYNSETS = "ILSVRC2012_id_to_synset.txt"


def is_image_name(name: str) -> bool:
    """Whether a file name is an image that the folder sources read (by extension; no dot files)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


class _FileSource:
    """Files on disk: `root` and a list of (path relative to root, label)."""

    def __init__(self, root: Path, examples: list[tuple[str, int]], class_names: list[str]):
        self.root = root
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self._paths = [p for p, _ in examples]
        self.labels = np.asarray([label for _, label in examples], dtype=np.int32)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        path = self.root / self._paths[index]
        try:
            data = path.read_bytes()
        except OSError:
            # An unreadable file is treated like an undecodable one by the caller.
            data = b""
        return data, int(self.labels[index])

    def name(self, index: int) -> str:
        return str(self.root / self._paths[index])

    def entries(self) -> list[tuple[str, int]]:
        """(path relative to `root`, label) for every example, in index order."""
        return list(zip(self._paths, self.labels.tolist()))

    def reader(self) -> FileReader:
        """What `prepare_split` reads an entry's bytes with."""
        return FileReader(self.root)


class FolderSource(_FileSource):
    """One sub-folder per class; files sorted by name within a class."""

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        class_names = _class_folders(root)
        if not class_names:
            raise FlaxnetsError(f"{root}: no class sub-folders found")
        examples = []
        for label, name in enumerate(class_names):
            files = sorted(f for f in os.listdir(root / name) if is_image_name(f))
            examples.extend((f"{name}/{f}", label) for f in files)
        if not examples:
            raise FlaxnetsError(f"{root}: class folders hold no image files")
        super().__init__(root, examples, class_names)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    return None


def read_csv_ground_truth(path: Path) -> dict[str, str]:
    """{ImageId: synset} from a Kaggle `LOC_val_solution.csv` (the first word of each prediction)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "ImageId" not in rows[0] or "PredictionString" not in rows[0]:
        raise FlaxnetsError(f"{path}: expected a CSV with columns ImageId,PredictionString")
    return {row["ImageId"]: row["PredictionString"].split()[0] for row in rows}


def devkit_labels(ilsvrc_ids: list[int], synsets: list[str], files: list[str], where: str) -> dict[str, str]:
    """Synset of each devkit-numbered file (`ILSVRC2012_val_00000001.JPEG` is line 1):
    `ilsvrc_ids` are the ground-truth lines (ILSVRC2012 IDs), `synsets[k - 1]` the synset of
    ID k. Returns {file name without extension: synset}; `where` names the ground truth."""
    truth = {}
    for f in files:
        match = re.search(r"(\d+)$", os.path.splitext(f)[0])
        if match is None or not 1 <= int(match.group(1)) <= len(ilsvrc_ids):
            raise FlaxnetsError(f"{f}: expected a file numbered 1..{len(ilsvrc_ids)} as in {where}")
        ilsvrc_id = ilsvrc_ids[int(match.group(1)) - 1]
        if not 1 <= ilsvrc_id <= len(synsets) or not synsets[ilsvrc_id - 1]:
            raise FlaxnetsError(f"{where}: ILSVRC ID {ilsvrc_id} of {f} has no synset")
        truth[os.path.splitext(f)[0]] = synsets[ilsvrc_id - 1]
    return truth


def _read_devkit_ground_truth(path: Path, synsets_path: Path, files: list[str]) -> dict[str, str]:
    synsets = [line.strip() for line in synsets_path.read_text().splitlines() if line.strip()]
    ids = [int(line) for line in path.read_text().split()]
    return devkit_labels(ids, synsets, files, f"{path} + {synsets_path.name}")


def label_flat_files(files: list[str], truth: dict[str, str], class_names: list[str], *,
                     where: str, ground_truth: str) -> list[tuple[str, int]]:
    """(file, class index) for a flat split's `files` from `truth` ({name without extension:
    synset}). A file without ground truth or with an unknown synset is an error; labelled
    files that are missing are a warning. `where` names the images, `ground_truth` the file."""
    index = {name: i for i, name in enumerate(class_names)}
    examples, unlabelled = [], []
    for f in files:
        synset = truth.get(os.path.splitext(f)[0])
        if synset is None:
            unlabelled.append(f)
        elif synset not in index:
            raise FlaxnetsError(f"{f}: synset {synset} of {ground_truth} is not a known class")
        else:
            examples.append((f, index[synset]))
    if unlabelled:
        raise FlaxnetsError(f"{where}: {plural(len(unlabelled), 'image')} "
                            f"{'has' if len(unlabelled) == 1 else 'have'} no ground truth, e.g. {unlabelled[0]}")
    if len(truth) > len(examples):
        warnings.warn(f"{ground_truth}: {len(truth) - len(examples)} labelled "
                      f"{noun(len(truth) - len(examples), 'image')} missing from {where}",
                      RuntimeWarning, stacklevel=3)
    return examples


class FlatSource(_FileSource):
    """A flat folder of images labelled by a ground-truth file (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, *, ground_truth=None, synsets=None, class_names=None):
        root = Path(root)
        files = sorted(f for f in os.listdir(root) if is_image_name(f))
        ground_truth = Path(ground_truth) if ground_truth else (
            _find(root, CSV_GROUND_TRUTH) or _find(root, DEVKIT_GROUND_TRUTH))
        if ground_truth is None:
            raise FlaxnetsError(
                f"{root}: flat image folder without ground truth; expected {CSV_GROUND_TRUTH} or "
                f"{DEVKIT_GROUND_TRUTH} + {DEVKIT_SYNSETS} in it or its parent"
            )
        if ground_truth.suffix.lower() == ".csv":
            truth = read_csv_ground_truth(ground_truth)
            all_synsets = set(truth.values())
        else:
            synsets = Path(synsets) if synsets else _find(root, DEVKIT_SYNSETS)
            if synsets is None:
                raise FlaxnetsError(f"{ground_truth}: needs {DEVKIT_SYNSETS} (ILSVRC ID -> synset) beside it")
            truth = _read_devkit_ground_truth(ground_truth, synsets, files)
            all_synsets = {s.strip() for s in synsets.read_text().splitlines() if s.strip()}
        if class_names is None:
            train = root.parent / "train"
            class_names = _class_folders(train) if train.is_dir() and train != root else []
            class_names = class_names or sorted(all_synsets)
        examples = label_flat_files(files, truth, class_names, where=str(root), ground_truth=ground_truth.name)
        super().__init__(root, examples, class_names)


class RelabelledSource:
    """`source` with its labels renumbered into another class list (a run's), matched by name:
    a source holding a subset of the classes, or the classes in another order, labels each
    image as the run does. `len`, `[i]`, `name(i)`, `num_classes` and `class_names` as every
    source; `class_names` are the run's."""

    def __init__(self, source, class_names: list[str], *, where: str, whose: str = "the run"):
        index = {name: i for i, name in enumerate(class_names)}
        unknown = [name for name in source.class_names if name not in index]
        if unknown:
            listed = ", ".join(repr(n) for n in unknown[:3]) + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")
            known = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
            raise FlaxnetsError(f"{where}: class {listed} is not among the {plural(len(class_names), 'class')} of {whose} ({known})")
        self.source = source
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self._labels = np.asarray([index[name] for name in source.class_names], np.int32)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        data, label = self.source[index]
        return data, int(self._labels[label])

    def name(self, index: int) -> str:
        return self.source.name(index)


def match_classes(source, class_names: list[str] | None, *, where: str, whose: str = "the run"):
    """`source` labelled by `class_names` (see `RelabelledSource`; `where` names the data and
    `whose` the class list in its error); `source` itself when `class_names` is None (unknown)
    or already its class list."""
    own = getattr(source, "class_names", None)
    if class_names is None or own is None or list(own) == list(class_names):
        return source
    return RelabelledSource(source, class_names, where=where, whose=whose)


def split_folder(path: str | os.PathLike, split: str) -> Path:
    """`path/split` when that folder exists, else `path` itself."""
    path = Path(path)
    if not path.is_dir():
        raise FlaxnetsError(f"data path {path} is not a folder")
    return path / split if (path / split).is_dir() else path


def open_source(path: str | os.PathLike, split: str = "train", **flat_options):
    """The source of one split of a data set.

    `path/split` is used when it exists, else `path` itself. The folder may hold a record
    manifest (from `flaxnets prepare`), one sub-folder per class, or flat images with ground
    truth (`flat_options`: `ground_truth=`, `synsets=`, `class_names=`, see `FlatSource`).
    Returns an object with `len`, `[i]` -> (encoded bytes, label), `num_classes`, `class_names`.
    """
    folder = split_folder(path, split)
    if (folder / MANIFEST).is_file():
        return RecordSource(folder)
    if _class_folders(folder):
        return FolderSource(folder)
    return FlatSource(folder, **flat_options)
