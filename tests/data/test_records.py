"""`flaxnets prepare` -> ArrayRecord round trip, skipped files, resume after an interruption."""

import json
import os

from _data_fixtures import write_class_folders

from flaxnets.cli import main
from flaxnets.data import open_source, train_loader


def _source_tree(root):
    write_class_folders(root / "train", [5, 4, 4])
    write_class_folders(root / "val", [2, 2, 1])
    (root / "train" / "c1" / "empty.JPEG").write_bytes(b"")


def test_prepare_round_trip_and_resume(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _source_tree(src)
    assert main(["prepare", str(src), str(out), "--examples-per-shard", "4"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "empty.JPEG" in printed

    folder, records = open_source(src, "train"), open_source(out, "train")
    assert records.class_names == folder.class_names and len(records) == len(folder) - 1 == 13
    from_folder = sorted((folder[i][0], folder[i][1]) for i in range(len(folder)) if folder[i][0])
    assert sorted(records[i] for i in range(len(records))) == from_folder
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["num_examples"] == 13 and manifest["num_skipped"] == 1
    assert len(open_source(out, "val")) == 5

    # Interrupt: one shard lost with a half-written temporary left behind.
    shards = sorted((out / "train").glob("*.array_record"))
    assert len(shards) == 4
    lost = shards[1]
    os.remove(lost)
    os.remove(lost.with_suffix(".json"))
    lost.with_name(lost.name + ".tmp").write_bytes(b"partial")
    kept = {p: p.stat().st_mtime_ns for p in shards if p != lost}
    assert main(["prepare", str(src), str(out), "--examples-per-shard", "4", "--workers", "2"]) == 0
    assert "3 of 4 shards already finished, kept" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list((out / "train").glob("*.tmp"))
    resumed = open_source(out, "train")
    assert sorted(resumed[i] for i in range(len(resumed))) == from_folder

    batch = next(train_loader(out, image_size=8, global_batch_size=4, seed=0))
    assert batch["image"].shape == (4, 8, 8, 3)
