"""Packed ArrayRecord shards: `flaxnets prepare SRC OUT` writes them, `RecordSource` reads them.

Layout of OUT (one sub-folder per split that SRC has, or OUT itself when SRC is one split)::

    OUT/train/manifest.json                       class map, counts, shards, skipped files
    OUT/train/train-00000-of-00042.array_record   shards of consecutive examples
    OUT/train/train-00000-of-00042.json           per-shard summary; its presence marks the
                                                  shard finished

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
import os
import struct
from pathlib import Path

from flaxnets.errors import FlaxnetsError

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
                    f"{self.directory}: shards hold {len(self._reader)} records, manifest says "
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


def _shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}"


def _write_shard(job: dict) -> dict:
    """Write one shard (runs in a worker process). Verifies that every image decodes."""
    from array_record.python.array_record_module import ArrayRecordWriter

    from flaxnets.data.decode import DecodeError, decode_image

    out_dir = Path(job["out_dir"])
    final = out_dir / (job["name"] + ".array_record")
    temporary = out_dir / (job["name"] + ".array_record.tmp")
    written, skipped = 0, []
    writer = ArrayRecordWriter(str(temporary), "group_size:1")
    try:
        for relative, label in job["examples"]:
            path = Path(job["root"]) / relative
            try:
                data = path.read_bytes()
                decode_image(data)
            except (OSError, DecodeError) as e:
                skipped.append({"path": str(path), "reason": str(e) or type(e).__name__})
                continue
            writer.write(encode_record(relative, label, data))
            written += 1
    finally:
        writer.close()
    os.replace(temporary, final)
    summary = {"file": final.name, "num_examples": written, "skipped": skipped}
    summary_path = out_dir / (job["name"] + ".json")
    summary_tmp = out_dir / (job["name"] + ".json.tmp")
    summary_tmp.write_text(json.dumps(summary))
    os.replace(summary_tmp, summary_path)
    return summary


def prepare_split(
    source,
    out_dir: str | os.PathLike,
    *,
    split: str,
    examples_per_shard: int = 1024,
    workers: int = 0,
    log=print,
) -> dict:
    """Pack a folder source (`FolderSource` or `FlatSource`) into ArrayRecord shards in
    `out_dir` and write its manifest. Resumable (see the module docstring). Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = source.entries()
    num_shards = max(1, -(-len(examples) // examples_per_shard))
    jobs, summaries = [], {}
    for index in range(num_shards):
        name = _shard_name(split, index, num_shards)
        summary_path = out_dir / (name + ".json")
        if summary_path.exists() and (out_dir / (name + ".array_record")).exists():
            summaries[index] = json.loads(summary_path.read_text())
            continue
        chunk = examples[index * len(examples) // num_shards : (index + 1) * len(examples) // num_shards]
        jobs.append((index, {"out_dir": str(out_dir), "name": name, "root": str(source.root),
                             "examples": chunk}))
    if summaries:
        log(f"{split}: {len(summaries)} of {num_shards} shards already finished, kept")
    if workers > 0 and len(jobs) > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            for (index, _), summary in zip(jobs, pool.map(_write_shard, [j for _, j in jobs])):
                summaries[index] = summary
    else:
        for index, job in jobs:
            summaries[index] = _write_shard(job)
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
    log(f"{split}: {manifest['num_examples']} examples in {num_shards} shards, "
        f"{len(skipped)} skipped -> {out_dir}")
    return manifest
