"""`flaxnets prepare` from the ImageNet-2012 archives as downloaded (a tar of per-class tars, a
flat validation tar, the devkit tarball), on small synthetic archives of the same structure:
the shards equal, byte for byte, those of the folder path on the extracted archives."""

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from _data_fixtures import encode, smooth_image

from flaxnets.cli import main
from flaxnets.data import imagenet_archives, open_source

# Sorted WordNet ids are the class order; the devkit numbers them differently (as the real
# meta.mat does), and lists a non-leaf synset that is not a class.
WNIDS = ["n01440764", "n01443537", "n02085620"]
ILSVRC_IDS = {"n02085620": 1, "n01440764": 2, "n01443537": 3}
PARENT = ("n00001740", 4)
VAL_WNIDS = ["n02085620", "n01440764", "n01443537", "n01443537", "n02085620", "n01440764", "n01440764"]


def _tar_bytes(files, shuffle_seed=0):
    """An uncompressed tar of {name: bytes}, members in a shuffled (not sorted) order."""
    names = sorted(files)
    random.Random(shuffle_seed).shuffle(names)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def _jpeg(seed, mode="RGB", fmt="JPEG"):
    return encode(smooth_image(16, 20, seed=seed), fmt, mode=mode)


def _meta_mat():
    rows = [(ILSVRC_IDS[w], w, f"class {w}", "gloss", 0) for w in sorted(ILSVRC_IDS, key=ILSVRC_IDS.get)]
    rows.append((PARENT[1], PARENT[0], "parent", "gloss", len(WNIDS)))
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    synsets = np.zeros((len(rows), 1), dtype=dtype)
    for i, row in enumerate(rows):
        synsets[i, 0] = row
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_archives(root, *, drop_devkit_member=None):
    """The three ImageNet-2012 archives, in miniature; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    inner = {}
    for label, wnid in enumerate(WNIDS):
        files = {f"{wnid}_{i}.JPEG": _jpeg(label * 100 + i) for i in range(3 + label)}
        if label == 0:
            # ImageNet's odd files: a PNG named .JPEG, a CMYK JPEG; plus an undecodable one and a
            # file that is not an image.
            files[f"{wnid}_png.JPEG"] = _jpeg(7, fmt="PNG")
            files[f"{wnid}_cmyk.JPEG"] = _jpeg(8, mode="CMYK")
            files[f"{wnid}_bad.JPEG"] = _jpeg(9)[:40]
            files["README.txt"] = b"not an image"
        inner[f"{wnid}.tar"] = _tar_bytes(files, label)
    train = root / "ILSVRC2012_img_train.tar"
    train.write_bytes(_tar_bytes(inner, 5))
    val = root / "ILSVRC2012_img_val.tar"
    val.write_bytes(_tar_bytes({f"ILSVRC2012_val_{k + 1:08d}.JPEG": _jpeg(500 + k)
                                for k in range(len(VAL_WNIDS))}, 6))
    devkit_files = {
        "ILSVRC2012_devkit_t12/data/meta.mat": _meta_mat(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
            "".join(f"{ILSVRC_IDS[w]}\n" for w in VAL_WNIDS).encode(),
        "ILSVRC2012_devkit_t12/readme.txt": b"devkit",
    }
    devkit_files.pop(drop_devkit_member, None)
    devkit = root / ("broken_devkit.tar.gz" if drop_devkit_member else "ILSVRC2012_devkit_t12.tar.gz")
    with tarfile.open(devkit, "w:gz") as tar:
        for name, data in devkit_files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return train, val, devkit


def extract_like_users(train, val, devkit, dest):
    """What users do today: extract everything, the per-class tars into train/<wnid>/, and write
    the devkit's ID -> synset list of the classes (IDs 1..3 here, 1..1000 in ImageNet) beside the
    validation images, as the flaxnets.data.sources docstring shows."""
    with tarfile.open(train) as outer:
        for member in outer.getmembers():
            with tarfile.open(fileobj=outer.extractfile(member)) as inner:
                inner.extractall(dest / "train" / member.name[: -len(".tar")], filter="data")
    with tarfile.open(val) as tar:
        tar.extractall(dest / "val", filter="data")
    with tarfile.open(devkit) as tar:
        tar.extractall(dest / "devkit", filter="data")
    data = dest / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    shutil.copy(data / "ILSVRC2012_validation_ground_truth.txt", dest / "val")
    rows = scipy.io.loadmat(data / "meta.mat", squeeze_me=True)["synsets"]
    ids = dict(zip(rows["ILSVRC2012_ID"], rows["WNID"]))
    (dest / "val" / "ILSVRC2012_id_to_synset.txt").write_text("".join(ids[k] + "\n" for k in range(1, 4)))
    return dest


def _archive_args(train, val, devkit, out, *extra):
    return ["prepare", "--train-tar", str(train), "--val-tar", str(val), "--devkit", str(devkit),
            str(out), "--examples-per-shard", "4", *extra]


def _shard_files(out, splits=("train", "val")):
    """{split/file: bytes} of every shard (the summaries and manifest are compared separately)."""
    return {f"{p.parent.name}/{p.name}": p.read_bytes()
            for split in splits for p in sorted((out / split).glob("*.array_record"))}


def _assert_same_as_folder(out, reference, splits=("train", "val")):
    assert _shard_files(out, splits) == _shard_files(reference, splits) and _shard_files(out, splits)
    for split in splits:
        ours, theirs = (json.loads((d / split / "manifest.json").read_text()) for d in (out, reference))
        for key in ("class_names", "num_examples", "num_skipped", "shards"):
            assert ours[key] == theirs[key], (split, key)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("archives")
    train, val, devkit = write_archives(root / "download")
    extracted = extract_like_users(train, val, devkit, root / "extracted")
    reference = root / "reference"
    assert main(["prepare", str(extracted), str(reference), "--examples-per-shard", "4"]) == 0
    return train, val, devkit, reference


def test_archives_give_the_folder_path_shards_byte_for_byte(archives, tmp_path, capsys):
    train, val, devkit, reference = archives
    out = tmp_path / "out"
    assert main(_archive_args(train, val, devkit, out)) == 0
    captured = capsys.readouterr()
    _assert_same_as_folder(out, reference)

    records = open_source(out, "val")
    assert records.class_names == WNIDS
    # Validation image 1 is n02085620 (ILSVRC ID 1): class 2 in WordNet order.
    assert [records[i][1] for i in range(len(records))] == [WNIDS.index(w) for w in VAL_WNIDS]
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert [s["path"] for s in manifest["skipped"]] == [f"{train}:n01440764.tar/n01440764_bad.JPEG"]
    # The PNG and the CMYK JPEG are kept, as the folder path keeps them.
    assert manifest["num_examples"] == 3 + 2 + 4 + 5 and manifest["class_names"] == WNIDS
    assert "warning: train has 15 images, ImageNet-2012's has 1,281,167" in captured.err
    assert "warning: val has 7 images, ImageNet-2012's has 50,000" in captured.err
    assert "warning: train has 3 classes, ImageNet-2012 has 1,000" in captured.err
    assert "val images 7/7" in captured.err and "img/s" in captured.err and "eta" in captured.err
    assert "train class tars indexed 3/3" in captured.err


def test_archives_with_two_workers_and_resume(archives, tmp_path, capsys):
    train, val, devkit, reference = archives
    out = tmp_path / "out"
    assert main(_archive_args(train, val, devkit, out, "--workers", "2")) == 0
    _assert_same_as_folder(out, reference)

    # Interrupt: one shard lost with a half-written temporary left behind.
    shards = sorted((out / "train").glob("*.array_record"))
    lost = shards[1]
    os.remove(lost)
    os.remove(lost.with_suffix(".json"))
    lost.with_name(lost.name + ".tmp").write_bytes(b"partial")
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*.array_record")}
    capsys.readouterr()
    assert main(_archive_args(train, val, devkit, out, "--workers", "2")) == 0
    printed = capsys.readouterr().out
    assert f"train: {len(shards) - 1} of {len(shards)} shards already finished, kept" in printed
    # The tars' headers are not read again: their index was kept beside the shards.
    assert f"{train}: reusing its index {out / 'train' / imagenet_archives.INDEX_FILE}" in printed
    assert f"{val}: reusing its index {out / 'val' / imagenet_archives.INDEX_FILE}" in printed
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list(out.glob("*/*.tmp"))
    _assert_same_as_folder(out, reference)


def test_truncated_archive_is_a_one_line_error_and_finished_shards_stay(archives, tmp_path, capsys):
    train, val, devkit, reference = archives
    out = tmp_path / "out"
    assert main(["prepare", "--train-tar", str(train), str(out), "--examples-per-shard", "4"]) == 0
    train_shards = {p: p.stat().st_mtime_ns for p in (out / "train").glob("*")}
    cut = tmp_path / "ILSVRC2012_img_val.tar"
    data = val.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(_archive_args(train, cut, devkit, out)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(cut) in error[0] and "truncated" in error[0]
    assert "ILSVRC2012_val_" in error[0]
    assert {p: p.stat().st_mtime_ns for p in (out / "train").glob("*")} == train_shards

    # The complete download resumes: train is kept as it is, val is written.
    assert main(_archive_args(train, val, devkit, out)) == 0
    assert "train: 4 of 4 shards already finished, kept" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in train_shards.items() if p.suffix == ".array_record")
    _assert_same_as_folder(out, reference)


def test_interrupted_by_a_truncated_member_then_resumed(archives, tmp_path, capsys):
    """A train archive cut short after indexing stops the run at the first shard it cannot
    read; the shards already written stay, and the rerun on the whole archive keeps them and
    ends with the uninterrupted result."""
    train, val, devkit, reference = archives
    copy = tmp_path / "ILSVRC2012_img_train.tar"
    shutil.copy(train, copy)
    source = imagenet_archives.open_train_archive(copy)
    entries = source.entries()
    cut = max(range(len(entries)), key=lambda i: entries[i][2])  # the member stored last
    os.truncate(copy, entries[cut][2] + 1)
    out = tmp_path / "out"
    from flaxnets.data.records import prepare_split
    from flaxnets.errors import FlaxnetsError

    with pytest.raises(FlaxnetsError, match=f"truncated archive: member n02085620.tar/{entries[cut][0][10:]}"):
        prepare_split(source, out / "train", split="train", examples_per_shard=4, log=lambda line: None)
    # Shards are written in order here (no workers): those before the cut member's are finished.
    failed_shard = max(j for j in range(4) if j * len(entries) // 4 <= cut)
    assert failed_shard >= 2
    finished = sorted(p.name for p in (out / "train").glob("*.array_record"))
    assert finished == [f"train-{i:05d}-of-00004.array_record" for i in range(failed_shard)]
    assert not list((out / "train").glob("*.tmp"))
    assert finished == sorted(p.name for p in (reference / "train").glob("*.array_record"))[:failed_shard]
    assert all((out / "train" / n).read_bytes() == (reference / "train" / n).read_bytes() for n in finished)

    kept = {n: (out / "train" / n).stat().st_mtime_ns for n in finished}
    shutil.copy(train, copy)
    assert main(["prepare", "--train-tar", str(copy), str(out), "--examples-per-shard", "4"]) == 0
    assert f"train: {failed_shard} of 4 shards already finished, kept" in capsys.readouterr().out
    assert kept == {n: (out / "train" / n).stat().st_mtime_ns for n in finished}
    _assert_same_as_folder(out, reference, splits=("train",))


def test_archive_cut_at_a_member_boundary_is_truncated(archives, tmp_path):
    """A download cut exactly between two members reads as a complete, shorter tar to tarfile;
    the missing end-of-archive marker gives it away."""
    _, val, devkit, _ = archives
    with tarfile.open(val) as tar:
        members = tar.getmembers()
    stored_last = max(members, key=lambda m: m.offset_data)
    cut = tmp_path / "ILSVRC2012_img_val.tar"
    cut.write_bytes(val.read_bytes()[: stored_last.offset_data + -(-stored_last.size // 512) * 512])
    from flaxnets.errors import FlaxnetsError

    with pytest.raises(FlaxnetsError, match=f"truncated archive: it ends after member {stored_last.name} without"):
        imagenet_archives.open_val_archive(cut, imagenet_archives.ValGroundTruth(devkit=devkit))


@pytest.mark.parametrize("member", ["ILSVRC2012_devkit_t12/data/meta.mat",
                                    "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"])
def test_missing_devkit_member_is_a_one_line_error(archives, tmp_path, capsys, member):
    train, val, _, _ = archives
    _, _, broken = write_archives(tmp_path / "download", drop_devkit_member=member)
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "train-00000-of-00004.array_record").write_bytes(b"finished")
    assert main(_archive_args(train, val, broken, out)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"flaxnets prepare: error: {broken}: missing member {member.split('/', 1)[1]}; "
                     "expected the ILSVRC2012 devkit"]
    assert (out / "train" / "train-00000-of-00004.array_record").read_bytes() == b"finished"


def test_wrong_archive_as_train_is_named(archives, tmp_path, capsys):
    _, val, devkit, _ = archives
    assert main(_archive_args(val, val, devkit, tmp_path / "out")) == 1
    error = capsys.readouterr().err
    assert "is not a per-class tar" in error and str(val) in error


def test_verify_archives_checks_published_md5(archives, tmp_path, capsys, monkeypatch):
    train, val, devkit, reference = archives
    out = tmp_path / "out"
    assert main(_archive_args(train, val, devkit, out, "--verify-archives")) == 1
    error = capsys.readouterr().err
    published = imagenet_archives.PUBLISHED_MD5["devkit"][1]
    assert f"{devkit}: MD5 {imagenet_archives.md5_of(devkit)}, but the published" in error
    assert published in error
    assert not out.exists()

    monkeypatch.setattr(imagenet_archives, "PUBLISHED_MD5", {
        role: (name, imagenet_archives.md5_of(path))
        for (role, (name, _)), path in zip(sorted(imagenet_archives.PUBLISHED_MD5.items()), [devkit, train, val])
    })
    assert main(_archive_args(train, val, devkit, out, "--verify-archives", "--workers", "2")) == 0
    captured = capsys.readouterr()
    assert "matches the published ILSVRC2012_img_train.tar" in captured.out
    assert "MiB hashed 1/1" in captured.err
    _assert_same_as_folder(out, reference)


def test_archive_form_usage_errors(archives, tmp_path, capsys):
    train, val, devkit, _ = archives
    for argv in (["prepare", "--val-tar", str(val), str(tmp_path / "o")],
                 ["prepare", str(tmp_path), str(tmp_path / "o"), "--train-tar", str(train)],
                 ["prepare", str(tmp_path / "o"), "--verify-archives"]):
        assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 3


def test_kaggle_layout_from_its_folder(archives, tmp_path, capsys):
    """The Kaggle copy: ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/} with LOC_val_solution.csv at the
    top; its CSV labels val exactly as the devkit does."""
    train, val, devkit, reference = archives
    kaggle = tmp_path / "imagenet-object-localization-challenge"
    extracted = extract_like_users(train, val, devkit, tmp_path / "extracted")
    data = kaggle / "ILSVRC" / "Data" / "CLS-LOC"
    data.mkdir(parents=True)
    shutil.copytree(extracted / "train", data / "train")
    shutil.copytree(extracted / "val", data / "val", ignore=shutil.ignore_patterns("*.txt"))
    rows = [f"ILSVRC2012_val_{k + 1:08d},{w} 1 2 30 40" for k, w in enumerate(VAL_WNIDS)]
    (kaggle / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (kaggle / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {w}\n" for w in WNIDS))
    out = tmp_path / "out"
    assert main(["prepare", str(kaggle), str(out), "--examples-per-shard", "4"]) == 0
    assert "warning: val has 7 images, ImageNet-2012's has 50,000" in capsys.readouterr().err
    _assert_same_as_folder(out, reference)

    # The same CSV labels the validation archive.
    out_csv = tmp_path / "out_csv"
    assert main(["prepare", "--val-tar", str(val), "--val-ground-truth", str(kaggle / "LOC_val_solution.csv"),
                 str(out_csv), "--examples-per-shard", "4"]) == 0
    assert _shard_files(out_csv) == {k: v for k, v in _shard_files(reference).items() if k.startswith("val/")}


def test_progress_off_a_terminal_prints_a_line_every_half_minute(monkeypatch, capsys):
    from flaxnets.commands import prepare

    now = [1000.0]
    monkeypatch.setattr(prepare.time, "monotonic", lambda: now[0])
    update = prepare._progress("train images")
    for done, at in [(0, 0), (5, 10), (9, 29), (12, 31), (20, 50), (30, 62), (40, 63)]:
        now[0] = 1000.0 + at
        update(done, 40)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ")[1].split(" img/s")[0].rsplit(" ", 1)[0] for line in lines] == [
        "train images 0/40", "train images 12/40", "train images 30/40", "train images 40/40"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_shards(tmp_path, capsys):
    """`flaxnets prepare` killed (SIGKILL) while writing shards, then rerun: the finished shards
    are kept as they are and the result equals an uninterrupted run on the extracted folders."""
    inner = {f"n0000000{c}.tar": _tar_bytes({f"n0000000{c}_{i:03d}.JPEG": _jpeg(c * 1000 + i) for i in range(100)}, c)
             for c in range(2)}
    train = tmp_path / "ILSVRC2012_img_train.tar"
    train.write_bytes(_tar_bytes(inner))
    extracted = tmp_path / "extracted"
    with tarfile.open(train) as outer:
        for member in outer.getmembers():
            with tarfile.open(fileobj=outer.extractfile(member)) as tar:
                tar.extractall(extracted / "train" / member.name[: -len(".tar")], filter="data")
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert main(["prepare", str(extracted), str(reference), "--examples-per-shard", "1"]) == 0

    argv = ["prepare", "--train-tar", str(train), str(out), "--examples-per-shard", "1"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "flaxnets", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list((out / "train").glob("*.json")) and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    # Finished shards are those with a summary; an array_record without one is redone.
    finished = {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.array_record")
                if p.with_suffix(".json").exists()}
    assert 1 <= len(finished) < 200, "the kill should land mid-run"
    capsys.readouterr()
    assert main(argv) == 0
    kept = re.search(r"train: (\d+) of 200 shards already finished, kept", capsys.readouterr().out)
    assert kept and int(kept.group(1)) == len(finished)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    _assert_same_as_folder(out, reference, splits=("train",))
