"""`export_digits`: counts, stratified deterministic split, loadable as a class-folder data set."""

from collections import Counter

import pytest

from flaxnets.data import open_source
from flaxnets.data.decode import decode_image
from flaxnets.data.digits import export_digits


@pytest.mark.slow
def test_export_digits_counts_and_split(tmp_path):
    counts = export_digits(tmp_path / "a", val_fraction=0.2, seed=0, size=16)
    assert counts == {"train": 1437, "val": 360, "num_classes": 10}
    train, val = open_source(tmp_path / "a", "train"), open_source(tmp_path / "a", "val")
    assert len(train) == 1437 and len(val) == 360
    assert train.class_names == [str(d) for d in range(10)]
    per_class = Counter(int(val.labels[i]) for i in range(len(val)))
    assert all(34 <= per_class[c] <= 38 for c in range(10))  # stratified: about 20% of ~180
    assert decode_image(train[0][0]).shape == (16, 16, 3)
    names = sorted(p.name for p in (tmp_path / "a" / "val").rglob("*.png"))
    export_digits(tmp_path / "b", val_fraction=0.2, seed=0, size=16)
    assert names == sorted(p.name for p in (tmp_path / "b" / "val").rglob("*.png"))
