"""ImageNet-2012 read straight from the archives as downloaded, without extracting them.

* `ILSVRC2012_img_train.tar`: a tar of 1,000 per-class tars `<wnid>.tar`, each holding that
  class's JPEGs;
* `ILSVRC2012_img_val.tar`: 50,000 flat JPEGs `ILSVRC2012_val_00000001.JPEG` ...;
* `ILSVRC2012_devkit_t12.tar.gz`: `data/ILSVRC2012_validation_ground_truth.txt` (line k: the
  ILSVRC2012 ID, 1-1000, of validation image k) and `data/meta.mat`, whose `synsets` struct
  maps ILSVRC2012 IDs to WordNet ids. Only its synsets with `num_children == 0` are the 1,000
  classes; the IDs do not follow the sorted WordNet ids (`torchvision/datasets/imagenet.py`,
  `parse_devkit_archive`, in pytorch/vision, reads it the same way).

The archives are indexed once (tar headers only: `TarInfo.offset_data` gives where each member's
bytes start in the file, nested tars included; the per-class tars in parallel), then
`flaxnets.data.records.prepare_split` reads each image as one byte range of the archive, shard
by shard in parallel. The index is kept beside the shards (`INDEX_FILE`) so that a resumed run
does not read the headers again. Examples, names and labels are exactly those `FolderSource` /
`FlatSource` give for the extracted folders (classes are the sorted WordNet ids, files sorted
by name within a class), so the shards are the same files.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from scipy.io import loadmat

from flaxnets.data.sources import devkit_labels, is_image_name, label_flat_files, read_csv_ground_truth
from flaxnets.errors import FlaxnetsError
from flaxnets.imagenet import NUM_CLASSES, TRAIN_IMAGES, VAL_IMAGES


# The published MD5 of each archive, as listed in ARCHIVE_META of
# torchvision/datasets/imagenet.py (pytorch/vision).
PUBLISHED_MD5 = {
    "train": ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e"),
    "val": ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622"),
    "devkit": ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf"),
}

INDEX_FILE = "archive-index.json.gz"
DEVKIT_META = "data/meta.mat"
DEVKIT_VAL_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


class ArchiveReader:
    """Reads an entry ``(name, label, offset, size)`` as one byte range of `path`. In the
    training archive (`nested`) the name `wnid/file` is the member `wnid.tar/file`."""

    def __init__(self, path: str | os.PathLike, nested: bool):
        self.path = Path(path)
        self.nested = nested
        self._fd = None

    def read(self, entry) -> bytes:
        """The member's bytes; a range past the end of the file is a truncated archive."""
        _, _, offset, size = entry
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise FlaxnetsError(
                f"{self.path}: truncated archive: member {self.member(entry)} needs bytes "
                f"{offset}..{offset + size}, the file has {os.fstat(self._fd).st_size}"
            )
        return data

    def member(self, entry) -> str:
        """The entry's member name inside the archive."""
        if not self.nested:
            return entry[0]
        wnid, file = entry[0].split("/", 1)
        return f"{wnid}.tar/{file}"

    def where(self, entry) -> str:
        """`archive:member`, for messages and the manifest."""
        return f"{self.path}:{self.member(entry)}"

    def __getstate__(self):
        # Workers open their own descriptor.
        return {**self.__dict__, "_fd": None}


class ArchiveSource:
    """One split inside an archive, for `prepare_split`: `root` (the archive), `class_names`,
    `entries()` in index order and `reader()`."""

    def __init__(self, path: Path, entries: list[tuple], class_names: list[str], *, nested: bool):
        self.root = path
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.nested = nested
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple]:
        """(name, label, byte offset, size) for every example, in index order."""
        return list(self._entries)

    def reader(self) -> ArchiveReader:
        """What `prepare_split` reads an entry's bytes with."""
        return ArchiveReader(self.root, self.nested)


def _cached(archive: Path, cache: Path | None, build, log) -> dict:
    """`build()` (an archive's listing, JSON-able), kept in `cache` and reused while the
    archive's path, size and modification time are unchanged, so that a resumed run does not
    read a million tar headers again."""
    stat = archive.stat()
    key = {"archive": str(archive.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if cache is not None and cache.is_file():
        try:
            with gzip.open(cache, "rt") as f:
                saved = json.load(f)
            if saved.get("key") == key:
                log(f"{archive}: reusing its index {cache}")
                return saved["listing"]
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache is rebuilt
    listing = build()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_name(cache.name + ".tmp")
        with gzip.open(temporary, "wt", compresslevel=1) as f:
            json.dump({"key": key, "listing": listing}, f)
        os.replace(temporary, cache)
    return listing


def _open_archive(path: Path, mode: str = "r:") -> tarfile.TarFile:
    if not path.is_file():
        raise FlaxnetsError(f"{path}: no such archive file")
    try:
        return tarfile.open(path, mode)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FlaxnetsError(f"{path}: not a readable tar archive ({e})") from None


def _members(tar: tarfile.TarFile, where: str, start: int, size: int) -> list[tarfile.TarInfo]:
    """The regular files of a tar whose bytes lie at `start`..`start + size` of the archive file,
    checked to lie within that range and to end with the end-of-archive marker (a download cut
    at a member boundary otherwise reads as a complete, shorter tar)."""
    members = []
    try:
        while (member := tar.next()) is not None:
            if member.isfile():
                members.append(member)
    except (tarfile.TarError, OSError, EOFError) as e:
        last = members[-1].name if members else "(none)"
        raise FlaxnetsError(f"{where}: truncated or damaged archive: cannot read past member {last} ({e})") from None
    for m in members:
        if m.offset_data + m.size > size:
            raise FlaxnetsError(
                f"{where}: truncated archive: member {m.name} needs bytes up to "
                f"{start + m.offset_data + m.size}, the file ends at {start + size}"
            )
    if tar.offset + tarfile.BLOCKSIZE > size:
        last = members[-1].name if members else "(none)"
        raise FlaxnetsError(
            f"{where}: truncated archive: it ends after member {last} without the end-of-archive marker")
    return members


def _image_members(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """Image files at the top level of a tar, as extraction into a folder would list them."""
    kept = [m for m in members if "/" not in m.name.removeprefix("./") and is_image_name(os.path.basename(m.name))]
    return sorted(kept, key=lambda m: os.path.basename(m.name))


def _index_class_tar(job: tuple[str, str, int, int]) -> list[list]:
    """[file name, absolute offset, size] of the images of one per-class tar."""
    path, member, start, size = job
    where = f"{path}:{member}"
    with open(path, "rb") as f:
        outer = tarfile.TarFile(fileobj=f)
        info = tarfile.TarInfo(member)
        info.offset_data, info.size, info.type = start, size, tarfile.REGTYPE
        try:
            inner = tarfile.open(fileobj=outer.extractfile(info), mode="r:")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FlaxnetsError(f"{where}: not a readable tar ({e}); expected a per-class tar of JPEGs") from None
        with inner:
            images = _image_members(_members(inner, where, start, size))
    return [[os.path.basename(m.name), start + m.offset_data, m.size] for m in images]


def _list_train_archive(path: Path, workers: int, progress) -> dict:
    with _open_archive(path) as tar:
        members = _members(tar, str(path), 0, path.stat().st_size)
    for m in members:
        if not m.name.endswith(".tar") or "/" in m.name.removeprefix("./"):
            raise FlaxnetsError(f"{path}: member {m.name} is not a per-class tar; expected the training "
                                "archive (a tar of <wnid>.tar files)")
    if not members:
        raise FlaxnetsError(f"{path}: no per-class tars inside; expected the training archive")
    members.sort(key=lambda m: m.name.removeprefix("./"))
    jobs = [(str(path), m.name, m.offset_data, m.size) for m in members]
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers) if workers > 0 and len(jobs) > 1 else None
    try:
        results = pool.map(_index_class_tar, jobs, chunksize=4) if pool else map(_index_class_tar, jobs)
        per_class = []
        if progress:
            progress(0, len(jobs))
        for images in results:
            per_class.append(images)
            if progress:
                progress(len(per_class), len(jobs))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return {"classes": [m.name.removeprefix("./")[: -len(".tar")] for m in members], "images": per_class}


def open_train_archive(path: str | os.PathLike, *, workers: int = 0, index_cache=None, progress=None,
                       log=print) -> ArchiveSource:
    """The training split of `ILSVRC2012_img_train.tar`: classes are the sorted per-class tar
    names (WordNet ids), files sorted by name within a class. The per-class tars are indexed in
    `workers` processes (`progress(done, total)` after each); the index is kept in
    `index_cache` (a file) for a resumed run."""
    path = Path(path)
    listing = _cached(path, Path(index_cache) if index_cache else None,
                      lambda: _list_train_archive(path, workers, progress), log)
    entries = [(f"{wnid}/{file}", label, offset, size)
               for label, (wnid, images) in enumerate(zip(listing["classes"], listing["images"]))
               for file, offset, size in images]
    if not entries:
        raise FlaxnetsError(f"{path}: the per-class tars hold no image files")
    return ArchiveSource(path, entries, listing["classes"], nested=True)


def _devkit_member(tar: tarfile.TarFile, path: Path, suffix: str) -> bytes:
    try:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)), None)
        if member is None:
            raise FlaxnetsError(f"{path}: missing member {suffix}; expected the ILSVRC2012 devkit")
        return tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FlaxnetsError(f"{path}: unreadable or truncated archive ({e})") from None


def read_devkit(path: str | os.PathLike) -> tuple[list[int], list[str]]:
    """(ILSVRC2012 ID of each validation image, synset of each ILSVRC2012 ID k at [k - 1]) from
    the devkit tarball; IDs of non-leaf synsets (not classes) map to ''."""
    path = Path(path)
    with _open_archive(path, "r:*") as tar:
        meta_bytes = _devkit_member(tar, path, DEVKIT_META)
        truth_bytes = _devkit_member(tar, path, DEVKIT_VAL_TRUTH)
    try:
        synsets = loadmat(io.BytesIO(meta_bytes), squeeze_me=True)["synsets"]
        ids = [int(i) for i in synsets["ILSVRC2012_ID"]]
        wnids = [str(w) for w in synsets["WNID"]]
        leaves = [int(n) == 0 for n in synsets["num_children"]]
    except (ValueError, KeyError, TypeError) as e:
        raise FlaxnetsError(f"{path}: {DEVKIT_META} is not the devkit's synset table ({e})") from None
    by_id = [""] * max(ids)
    for ilsvrc_id, wnid, leaf in zip(ids, wnids, leaves):
        if leaf:
            by_id[ilsvrc_id - 1] = wnid
    try:
        ground_truth = [int(line) for line in truth_bytes.decode().split()]
    except ValueError:
        raise FlaxnetsError(f"{path}: {DEVKIT_VAL_TRUTH} is not a list of ILSVRC2012 IDs") from None
    return ground_truth, by_id


def _list_val_archive(path: Path) -> dict:
    with _open_archive(path) as tar:
        images = _image_members(_members(tar, str(path), 0, path.stat().st_size))
    return {"images": [[m.name.removeprefix("./"), m.offset_data, m.size] for m in images]}


class ValGroundTruth:
    """Validation labels, read when made: the devkit's (`devkit`: ILSVRC2012 IDs mapped through
    meta.mat) or a Kaggle `LOC_val_solution.csv`'s (`csv`). `known` are its classes, sorted."""

    def __init__(self, *, devkit=None, csv=None):
        if csv is not None:
            self.where = Path(csv).name
            self._truth = read_csv_ground_truth(Path(csv))
            self.known = sorted(set(self._truth.values()))
        elif devkit is not None:
            self.where = f"{Path(devkit).name}:{DEVKIT_VAL_TRUTH}"
            self._ids, self._synsets = read_devkit(devkit)
            self._truth = None
            self.known = sorted(s for s in self._synsets if s)
        else:
            raise FlaxnetsError("validation images need ground truth: the devkit or LOC_val_solution.csv")

    def label(self, files: list[str], class_names: list[str], where: str) -> list[tuple[str, int]]:
        """(file, class index) for validation files named `ILSVRC2012_val_<k>.JPEG`."""
        truth = self._truth or devkit_labels(self._ids, self._synsets, files, self.where)
        return label_flat_files(files, truth, class_names, where=where, ground_truth=self.where)


def open_val_archive(path: str | os.PathLike, ground_truth: ValGroundTruth, *,
                     class_names: list[str] | None = None, index_cache=None, log=print) -> ArchiveSource:
    """The validation split of `ILSVRC2012_img_val.tar`, labelled by `ground_truth`. Classes:
    `class_names` (the training split's) or else the ground truth's, sorted. The index of the
    tar is kept in `index_cache` (a file) for a resumed run."""
    path = Path(path)
    images = _cached(path, Path(index_cache) if index_cache else None, lambda: _list_val_archive(path), log)["images"]
    class_names = class_names or ground_truth.known
    examples = ground_truth.label([name for name, _, _ in images], class_names, str(path))
    entries = [(name, label, offset, size) for (name, label), (_, offset, size) in zip(examples, images)]
    return ArchiveSource(path, entries, class_names, nested=False)


def md5_of(path: str | os.PathLike, chunk: int = 1 << 22, read=None) -> str:
    """Hex MD5 of a file, read in 4 MiB chunks; `read(n)` is told of each chunk's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if read:
                read(len(block))
    return digest.hexdigest()


def verify_archives(archives: dict[str, str | os.PathLike], *, workers: int = 0, log=print,
                    progress=None) -> None:
    """Check each archive ({"train"|"val"|"devkit": path}) against its published MD5
    (`PUBLISHED_MD5`); a mismatch raises `FlaxnetsError` naming the file and both digests.
    With `workers`, the archives are hashed concurrently (threads: hashlib releases the GIL);
    `progress(megabytes done, megabytes in all)` is called about twice a second."""
    roles = sorted(archives)
    paths = [Path(archives[r]) for r in roles]
    for p in paths:
        if not p.is_file():
            raise FlaxnetsError(f"{p}: no such archive file")
    log(f"verifying MD5 of {', '.join(str(p) for p in paths)}")
    done = [0] * len(paths)  # bytes hashed per archive, each written by its own thread
    mib = -(-sum(p.stat().st_size for p in paths) >> 20)

    def counter(i):
        def read(n):
            done[i] += n
        return read

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        futures = [pool.submit(md5_of, p, read=counter(i)) for i, p in enumerate(paths)]
        while concurrent.futures.wait(futures, timeout=0.5).not_done:
            if progress:
                progress(sum(done) >> 20, mib)
        if progress:
            progress(mib, mib)
        digests = [f.result() for f in futures]
    for role, p, digest in zip(roles, paths, digests):
        name, published = PUBLISHED_MD5[role]
        if digest != published:
            raise FlaxnetsError(f"{p}: MD5 {digest}, but the published {name} has {published}: "
                                "the download is damaged or a different file")
        log(f"{p}: MD5 {digest} matches the published {name}")


def count_warnings(split: str, num_images: int, num_classes: int) -> list[str]:
    """Lines naming how a split's image and class counts differ from ImageNet-2012's."""
    expected = {"train": TRAIN_IMAGES, "val": VAL_IMAGES}.get(split)
    lines = []
    if expected is not None and num_images != expected:
        lines.append(f"warning: {split} has {num_images:,} images, ImageNet-2012's has {expected:,}")
    if num_classes != NUM_CLASSES:
        lines.append(f"warning: {split} has {num_classes:,} classes, ImageNet-2012 has {NUM_CLASSES:,}")
    return lines
