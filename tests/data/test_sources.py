"""Sources: class-folder and flat-val layouts, CSV and devkit ground truth, class index order."""

import pytest
from _data_fixtures import encode, smooth_image, write_class_folders

from flaxnets.data import open_source
from flaxnets.data.decode import decode_image
from flaxnets.errors import FlaxnetsError

SYNSETS = ["n04592741", "n01440764", "n02119789"]  # deliberately unsorted


def _flat_val(root, labels):
    val = root / "val"
    val.mkdir(parents=True)
    for i, synset in enumerate(labels, start=1):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(encode(smooth_image(10, 12, seed=i)))
    return val


def test_class_folders_index_by_sorted_folder_name(tmp_path):
    for name in ["zebra", "ant", "Mole"]:
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "train" / name / "a.jpg").write_bytes(encode(smooth_image(8, 8)))
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    source = open_source(tmp_path, "train")
    assert source.class_names == ["Mole", "ant", "zebra"] and source.num_classes == 3
    assert len(source) == 3 and [source[i][1] for i in range(3)] == [0, 1, 2]
    assert decode_image(source[0][0]).shape == (8, 8, 3)


def test_classes_matched_to_another_class_list_by_name(tmp_path):
    """A split labelled by a run's class list: another order, a subset, or an unknown class."""
    from flaxnets.data.sources import match_classes

    write_class_folders(tmp_path, [2, 1, 1])  # c0, c1, c2
    source = open_source(tmp_path, "train")
    labels = [source[i][1] for i in range(len(source))]
    assert labels == [0, 0, 1, 2]
    # The run's order differs from the folders' (e.g. a records manifest's class map).
    matched = match_classes(source, ["c2", "c0", "c1"], where="data")
    assert [matched[i][1] for i in range(len(matched))] == [1, 1, 2, 0]
    assert matched.class_names == ["c2", "c0", "c1"] and matched.num_classes == 3
    assert matched.name(3) == source.name(3) and matched[0][0] == source[0][0]
    # The folder holds a subset of the run's classes.
    subset = match_classes(source, ["c0", "x", "c1", "y", "c2"], where="data")
    assert [subset[i][1] for i in range(len(subset))] == [0, 0, 2, 4]
    assert match_classes(source, None, where="data") is source
    with pytest.raises(FlaxnetsError, match=r"^data: class 'c1', 'c2' is not among the 2 classes of the run \(c0, z\)$"):
        match_classes(source, ["c0", "z"], where="data")


def test_split_folder_or_the_folder_itself(tmp_path):
    write_class_folders(tmp_path, [2, 1])
    assert len(open_source(tmp_path, "train")) == 3


def test_flat_val_with_kaggle_csv(tmp_path):
    labels = [SYNSETS[i % 3] for i in range(7)]
    _flat_val(tmp_path, labels)
    rows = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{i:08d},{s} 10 20 100 200 {s} 1 2 3 4" for i, s in enumerate(labels, start=1)]
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows[:1] + rows[:0:-1]) + "\n")  # any row order
    source = open_source(tmp_path, "val")
    assert source.class_names == sorted(SYNSETS)
    index = {s: i for i, s in enumerate(sorted(SYNSETS))}
    assert [source[i][1] for i in range(7)] == [index[s] for s in labels]


def test_flat_val_uses_the_train_class_list(tmp_path):
    for synset in SYNSETS + ["n09999999"]:
        (tmp_path / "train" / synset).mkdir(parents=True)
    labels = ["n02119789", "n04592741"]
    _flat_val(tmp_path, labels)
    (tmp_path / "val" / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(
            f"ILSVRC2012_val_{i:08d},{s} 1 2 3 4\n" for i, s in enumerate(labels, start=1)))
    source = open_source(tmp_path, "val")
    assert source.num_classes == 4
    assert [source.class_names[source[i][1]] for i in range(2)] == labels


def test_flat_val_with_devkit_ground_truth_and_synset_list(tmp_path):
    # ILSVRC IDs follow the devkit's own order, not the sorted synsets.
    labels = [SYNSETS[k] for k in (2, 0, 1, 0)]
    _flat_val(tmp_path, labels)
    (tmp_path / "ILSVRC2012_id_to_synset.txt").write_text("\n".join(SYNSETS) + "\n")
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("3\n1\n2\n1\n")
    source = open_source(tmp_path, "val")
    assert source.class_names == sorted(SYNSETS)
    assert [source.class_names[source[i][1]] for i in range(4)] == labels


def test_flat_val_without_ground_truth_is_a_clear_error(tmp_path):
    _flat_val(tmp_path, SYNSETS)
    with pytest.raises(FlaxnetsError, match="LOC_val_solution.csv"):
        open_source(tmp_path, "val")


def test_flat_val_image_without_label_is_an_error(tmp_path):
    _flat_val(tmp_path, SYNSETS)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n")
    with pytest.raises(FlaxnetsError, match="2 images have no ground truth"):
        open_source(tmp_path, "val")


def test_host_pipeline_imports_neither_jax_nor_models_nor_train():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import flaxnets

    code = ("import sys, flaxnets.data.loader, flaxnets.data.records, flaxnets.data.digits; "
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith(('flaxnets.models', 'flaxnets.train'))]; "
            "assert not bad, bad")
    src = str(Path(flaxnets.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
