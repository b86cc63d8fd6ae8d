"""Training refuses data laid out so that it would evaluate on its own training images or could
not evaluate at all (`flaxnets.data.layout.check_training_layout`): class folders directly under
--data, train/ without val/ (once misreported as "class folders hold no image files"), val/
without train/, the same folder for both, and a training split of one class. The layouts that
train (image folders, `flaxnets prepare` records, data.train_source / data.eval_source) pass."""

import pytest
from _data_fixtures import write_class_folders

from flaxnets.cli import main
from flaxnets.data import check_training_layout
from flaxnets.errors import FlaxnetsError


def _splits(root, train=(2, 2), val=(1, 1)):
    write_class_folders(root / "train", list(train), size=(8, 8))
    write_class_folders(root / "val", list(val), size=(8, 8))
    return root


def test_class_folders_directly_under_data_are_refused(tmp_path):
    write_class_folders(tmp_path, [2, 2, 2], size=(8, 8))
    with pytest.raises(FlaxnetsError, match=r"holds class folders \(c0, c1, c2\), not train/ and val/: training "
                                            r"would evaluate on its own training images; expected .*/train/<class>/"
                                            r"\.\.\. and .*/val/<class>/\.\.\."):
        check_training_layout(tmp_path)


def test_train_without_val_says_val_is_missing(tmp_path):
    write_class_folders(tmp_path / "train", [2, 2], size=(8, 8))
    with pytest.raises(FlaxnetsError, match=r"has train/ but no val/: no held-out images to evaluate on; "
                                            r"expected .*/val/<class>/\.\.\."):
        check_training_layout(tmp_path)
    # A separate evaluation source stands in for val/.
    write_class_folders(tmp_path.parent / "heldout", [1, 1], size=(8, 8))
    check_training_layout(tmp_path, eval_source=str(tmp_path.parent / "heldout"))


def test_val_without_train_and_an_empty_folder_are_refused(tmp_path):
    write_class_folders(tmp_path / "a" / "val", [1, 1], size=(8, 8))
    with pytest.raises(FlaxnetsError, match=r"has val/ but no train/"):
        check_training_layout(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlaxnetsError, match=r"holds no train/ or val/ folder, not train/ and val/"):
        check_training_layout(tmp_path / "empty")


def test_the_same_folder_for_training_and_evaluation_is_refused(tmp_path):
    root = _splits(tmp_path / "data")
    with pytest.raises(FlaxnetsError, match=r"the training and evaluation data are the same folder"):
        check_training_layout(root, eval_source=str(root / "train"))


def test_one_training_class_is_refused(tmp_path):
    root = _splits(tmp_path / "data", train=(3,), val=(1,))
    with pytest.raises(FlaxnetsError, match=r"train: the training data has one class \('c0'\); a classifier "
                                            r"needs at least two classes"):
        check_training_layout(root)


def test_folders_records_and_explicit_sources_pass(tmp_path, capsys):
    root = _splits(tmp_path / "data")
    check_training_layout(root)
    assert main(["prepare", str(root), str(tmp_path / "records")]) == 0
    check_training_layout(tmp_path / "records")
    # Both splits given: --data's own layout does not matter.
    check_training_layout(tmp_path, train_source=str(root / "train"), eval_source=str(root / "val"))
    # Prepared records of one class are refused too.
    one = _splits(tmp_path / "one", train=(3,), val=(1,))
    assert main(["prepare", str(one), str(tmp_path / "one_records")]) == 0
    with pytest.raises(FlaxnetsError, match=r"one class"):
        check_training_layout(tmp_path / "one_records")


def test_train_stops_before_any_work_directory_with_one_line(tmp_path, capsys):
    write_class_folders(tmp_path / "photos", [2, 2], size=(8, 8))
    workdir = tmp_path / "run"
    status = main(["train", "--recipe", "digits_demo", "--data", str(tmp_path / "photos"), "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and "holds class folders (c0, c1), not train/ and val/" in err
    assert not workdir.exists()


def test_training_paths_read_the_sources_once_checked(tmp_path):
    """`training_paths` is the layout check plus the paths the loaders open: the config's sources
    where set, else --data (a wrong layout is still its one-line error)."""
    from flaxnets.config import DataConfig
    from flaxnets.data import training_paths

    root = _splits(tmp_path / "d")
    assert training_paths(DataConfig(), str(root)) == (str(root), str(root))
    held = tmp_path / "held"
    write_class_folders(held / "val", [1, 1], size=(8, 8))
    assert training_paths(DataConfig(eval_source=str(held)), str(root)) == (str(root), str(held))
    with pytest.raises(FlaxnetsError, match="same folder"):
        training_paths(DataConfig(eval_source=str(root / "train")), str(root))
