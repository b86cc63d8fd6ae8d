"""Packed ArrayRecord shards: `flaxnets prepare SRC OUT` (or the ImageNet archive form, see
`flaxnets.data.imagenet_archives`) writes them, `RecordSource` reads them.

Layout of OUT (one sub-folder per split that SRC has, or OUT itself when SRC is one split)::

    OUT/train/manifest.json                       class map, counts, shards, skipped files
    OUT/train/train-00000-of-00042.array_record   shards of consecutive examples
    OUT/train/train-00000-of-00042.json           per-shard summary; its presence marks the
                                                  shard finished
    OUT/train/archive-index.json.gz               archive form only: the tar's index, reused
                                                  when resuming

A record is ``struct('<iH') label, name length`` + the name (UTF-8, the file's path relative
to the split folder, for error messages) + the original encoded image bytes, unchanged.

Preparation is resumable: shards are written under a temporary name and renamed when complete,
so after an interruption the finished shards (those with a summary) are kept and skipped, and
only the rest are rewritten. Every image is decoded once to verify it; undecodable files are
left out, listed in the manifest and printed.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import struct
import threading
from pathlib import Path

from flaxnets.errors import FlaxnetsError
from flaxnets.text import plural

MANIFEST = "manifest.json"
FORMAT = "flaxnets-records-v1"
_HEADER = struct.Struct("<iH")


def encode_record(name: str, label: int, data: bytes) -> bytes:
    """One record: label, the example's name and its encoded image bytes."""
    name_bytes = name.encode("utf-8")
    return _HEADER.pack(label, len(name_bytes)) + name_bytes + data


def decode_record(record: bytes) -> tuple[str, int, bytes]:
    """Inverse of `encode_record`: (name, label, encoded image bytes)."""
    label, name_length = _HEADER.unpack_from(record)
    start = _HEADER.size
    name = bytes(record[start : start + name_length]).decode("utf-8")
    return name, label, bytes(record[start + name_length :])


class RecordSource:
    """Random access to a split written by `prepare`: `source[i]` -> (encoded bytes, label)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise FlaxnetsError(f"cannot read record manifest {manifest_path}: {e}") from None
        if self.manifest.get("format") != FORMAT:
            raise FlaxnetsError(
                f"{manifest_path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}"
            )
        self.class_names = list(self.manifest["class_names"])
        self.num_classes = len(self.class_names)
        self._paths = [str(self.directory / s["file"]) for s in self.manifest["shards"]]
        self._length = int(self.manifest["num_examples"])
        self._reader = None

    def _data_source(self):
        if self._reader is None:
            from grain.sources import ArrayRecordDataSource

            self._reader = ArrayRecordDataSource(self._paths)
            if len(self._reader) != self._length:
                raise FlaxnetsError(
                    f"{self.directory}: shards hold {plural(len(self._reader), 'record')}, manifest says "
                    f"{self._length}; re-run `flaxnets prepare`"
                )
        return self._reader

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        _, label, data = decode_record(self._data_source()[int(index)])
        return data, label

    def name(self, index: int) -> str:
        """The example's original path, relative to the split folder (for warnings)."""
        return f"{self.directory}[{index}]:{decode_record(self._data_source()[int(index)])[0]}"

    def __getstate__(self):
        # Readers hold open files; workers reopen them.
        state = self.__dict__.copy()
        state["_reader"] = None
        return state


class FileReader:
    """Reads an entry ``(path relative to root, label)`` of a folder source from disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def read(self, entry) -> bytes:
        """The entry's encoded image bytes (OSError: counted as a skipped file)."""
        return (self.root / entry[0]).read_bytes()

    def where(self, entry) -> str:
        """The entry's location, for messages and the manifest."""
        return str(self.root / entry[0])


def _shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}"


# Examples written or skipped so far, shared by the process running `prepare_split` and its
# workers, so that a progress bar moves within shards, not only when one completes.
_examples_done = None


def _share_counter(counter) -> None:
    global _examples_done
    _examples_done = counter


def _write_shard(job: dict) -> dict:
    """Write one shard (runs in a worker process). Verifies that every image decodes.

    An entry that cannot be read (OSError) or decoded is skipped and listed; any other error
    (e.g. a truncated archive) stops the shard, whose temporary file is removed.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    from flaxnets.data.decode import DecodeError, decode_image

    out_dir = Path(job["out_dir"])
    reader = job["reader"]
    final = out_dir / (job["name"] + ".array_record")
    temporary = out_dir / (job["name"] + ".array_record.tmp")
    written, skipped = 0, []
    writer = ArrayRecordWriter(str(temporary), "group_size:1")
    try:
        for entry in job["examples"]:
            try:
                data = reader.read(entry)
                decode_image(data)
            except (OSError, DecodeError) as e:
                skipped.append({"path": reader.where(entry), "reason": str(e) or type(e).__name__})
            else:
                writer.write(encode_record(entry[0], entry[1], data))
                written += 1
            if _examples_done is not None:
                with _examples_done.get_lock():
                    _examples_done.value += 1
    except BaseException:
        writer.close()
        temporary.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(temporary, final)
    summary = {"file": final.name, "num_examples": written, "skipped": skipped}
    summary_path = out_dir / (job["name"] + ".json")
    summary_tmp = out_dir / (job["name"] + ".json.tmp")
    summary_tmp.write_text(json.dumps(summary))
    os.replace(summary_tmp, summary_path)
    return summary


def _run_jobs(jobs: list[tuple[int, dict]], workers: int, counter, started) -> dict[int, dict]:
    """Run shard jobs here or in `workers` processes, calling `started()` once they are under
    way (after the workers are forked, so that they do not inherit its thread). On the first
    error the jobs not yet started are cancelled (finished shards stay) and the error is raised."""
    if workers <= 0 or len(jobs) <= 1:
        _share_counter(counter)
        started()
        try:
            return {index: _write_shard(job) for index, job in jobs}
        finally:
            _share_counter(None)
    summaries = {}
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, initializer=_share_counter, initargs=(counter,))
    try:
        futures = {pool.submit(_write_shard, job): index for index, job in jobs}
        started()
        for future in concurrent.futures.as_completed(futures):
            summaries[futures[future]] = future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return summaries


def prepare_split(
    source,
    out_dir: str | os.PathLike,
    *,
    split: str,
    examples_per_shard: int = 1024,
    workers: int = 0,
    log=print,
    progress=None,
) -> dict:
    """Pack a source into ArrayRecord shards in `out_dir` and write its manifest.

    `source` has `root`, `class_names`, `entries()` -> [(name, label, ...)] in index order and
    `reader()` -> an object with `read(entry)` -> bytes and `where(entry)` -> str: a folder
    source (`FolderSource`, `FlatSource`) or an archive (`flaxnets.data.imagenet_archives`).
    The shards depend only on the entries' names, labels and bytes, so the same images give
    the same files from either. Resumable (see the module docstring). `progress(done, total)`,
    if given, is called about twice a second from another thread with the number of examples
    handled (finished shards included). Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = source.entries()
    reader = source.reader()
    num_shards = max(1, -(-len(examples) // examples_per_shard))
    jobs, summaries, done = [], {}, 0
    for index in range(num_shards):
        name = _shard_name(split, index, num_shards)
        summary_path = out_dir / (name + ".json")
        chunk = examples[index * len(examples) // num_shards : (index + 1) * len(examples) // num_shards]
        if summary_path.exists() and (out_dir / (name + ".array_record")).exists():
            summaries[index] = json.loads(summary_path.read_text())
            done += len(chunk)
            continue
        jobs.append((index, {"out_dir": str(out_dir), "name": name, "reader": reader, "examples": chunk}))
    if summaries:
        log(f"{split}: {len(summaries)} of {plural(num_shards, 'shard')} already finished, kept")
    counter = multiprocessing.Value("q", 0)
    stop = threading.Event()

    def report():
        while not stop.wait(0.5):
            progress(done + counter.value, len(examples))

    watcher = threading.Thread(target=report, daemon=True) if progress and jobs else None
    if watcher:
        progress(done, len(examples))  # the starting point, so rates count only this run's work
    try:
        summaries.update(_run_jobs(jobs, workers, counter, watcher.start if watcher else lambda: None))
    finally:
        stop.set()
        if watcher and watcher.is_alive():
            watcher.join()
    if watcher:
        progress(done + counter.value, len(examples))
    shards = [summaries[i] for i in range(num_shards)]
    skipped = [s for shard in shards for s in shard["skipped"]]
    for item in skipped:
        log(f"{split}: skipped {item['path']}: {item['reason']}")
    manifest = {
        "format": FORMAT,
        "split": split,
        "source": str(source.root),
        "class_names": list(source.class_names),
        "num_examples": sum(s["num_examples"] for s in shards),
        "num_skipped": len(skipped),
        "skipped": skipped,
        "shards": [{"file": s["file"], "num_examples": s["num_examples"]} for s in shards],
    }
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out_dir / MANIFEST)
    log(f"{split}: {plural(manifest['num_examples'], 'example')} in {plural(num_shards, 'shard')}, "
        f"{len(skipped)} skipped -> {out_dir}")
    return manifest
