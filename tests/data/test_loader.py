"""Grain loaders: exact evaluation coverage, deterministic order, disjoint shards, resume."""

import json

import numpy as np
import pytest
from _data_fixtures import IndexSource

from flaxnets.data import eval_loader, normalize, train_loader
from flaxnets.errors import FlaxnetsError


def _eval_labels(source, global_batch, processes):
    seen, batch_counts = [], []
    for p in range(processes):
        loader = eval_loader(source, image_size=8, crop_fraction=0.875, interpolation="bilinear",
                             global_batch_size=global_batch, process_index=p, process_count=processes)
        batches = list(loader)
        batch_counts.append(len(batches))
        assert len(batches) == loader.num_batches
        for batch in batches:
            assert batch["image"].shape == (global_batch // processes, 8, 8, 3)
            assert batch["image"].dtype == np.uint8 and batch["label"].dtype == np.int32
            assert batch["mask"].dtype == bool
            # Padding only at the end of a batch, and padded rows are zero.
            assert not batch["image"][~batch["mask"]].any()
            seen.extend(batch["label"][batch["mask"]].tolist())
        assert loader.coverage()["num_skipped"] == 0
    return seen, batch_counts


@pytest.mark.parametrize("n", [1, 23])
@pytest.mark.parametrize("global_batch,processes", [(4, 1), (4, 2), (8, 4), (12, 2), (32, 4)])
def test_eval_visits_every_example_exactly_once(n, global_batch, processes):
    seen, batch_counts = _eval_labels(IndexSource(n), global_batch, processes)
    assert sorted(seen) == list(range(n))
    assert len(set(batch_counts)) == 1
    assert batch_counts[0] == -(-n // global_batch)


def test_eval_local_batch_must_divide_over_devices():
    with pytest.raises(FlaxnetsError, match="local device count 4"):
        eval_loader(IndexSource(5), image_size=8, crop_fraction=1.0, interpolation="bilinear",
                    global_batch_size=12, process_count=2, device_count=4)


def _labels(loader, steps):
    return [next(loader)["label"].tolist() for _ in range(steps)]


def _train(source, **kw):
    kw.setdefault("seed", 0)
    return train_loader(source, image_size=8, global_batch_size=kw.pop("batch", 8), **kw)


def test_train_order_is_seeded_and_changes_per_epoch():
    source = IndexSource(20)
    first = _labels(_train(source), 4)  # steps_per_epoch = 2: epochs 0 and 1
    assert first == _labels(_train(source), 4)
    assert first[:2] != first[2:]
    for epoch in ([*first[0], *first[1]], [*first[2], *first[3]]):
        assert len(set(epoch)) == 16  # no repeats within an epoch; 4 examples dropped
    assert first != _labels(_train(source, seed=1), 4)
    assert _labels(_train(source, start_epoch=1), 2) == first[2:]


def test_train_batch_contents():
    loader = _train(IndexSource(20))
    assert loader.steps_per_epoch == 2
    batch = next(loader)
    assert batch["image"].shape == (8, 8, 8, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and set(batch) == {"image", "label"}


def test_train_processes_read_disjoint_shards_of_the_global_batch():
    source = IndexSource(37)
    whole = _labels(_train(source, batch=12), 6)
    parts = [_labels(_train(source, batch=12, process_index=p, process_count=3), 6) for p in range(3)]
    for step in range(6):
        shards = [set(parts[p][step]) for p in range(3)]
        assert sum(len(s) for s in shards) == len(set.union(*shards)) == 12
        assert [x for p in range(3) for x in parts[p][step]] == whole[step]


def test_train_resume_mid_epoch_gives_identical_batches():
    source = IndexSource(20)
    loader = _train(source, batch=4)  # 5 steps per epoch
    for _ in range(3):
        next(loader)
    state = json.loads(json.dumps(loader.get_state()))
    expected = [next(loader) for _ in range(4)]  # crosses into epoch 1
    resumed = _train(source, batch=4)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["label"], want["label"])
        np.testing.assert_array_equal(got["image"], want["image"])
    with pytest.raises(FlaxnetsError, match="seed"):
        _train(source, batch=4, seed=3).set_state(state)


@pytest.mark.slow
def test_train_workers_give_the_same_batches_after_restore():
    source = IndexSource(20)
    reference = _train(source, batch=4)
    for _ in range(3):
        next(reference)
    state = reference.get_state()
    loader = _train(source, batch=4, workers=1)
    try:
        loader.set_state(state)  # one worker start-up: restore, then read across an epoch end
        for _ in range(3):
            want, got = next(reference), next(loader)
            np.testing.assert_array_equal(got["image"], want["image"])
            np.testing.assert_array_equal(got["label"], want["label"])
    finally:
        loader.close()


def test_train_batch_larger_than_data_is_an_error():
    with pytest.raises(FlaxnetsError, match="larger than"):
        _train(IndexSource(5), batch=8)


def test_normalize_is_float32_on_the_255_scale():
    images = np.full((2, 2, 2, 3), 255, np.uint8)
    out = normalize(images, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.asarray(out), 1.0)


def test_loaders_from_config_read_each_data_key_they_take(digits):
    """Issue 22: training and `flaxnets eval --workdir` build their loaders from the DataConfig and
    the run's resolved preprocessing, whole (`train_loader_from_config` / `eval_loader_from_config`),
    so a data key has one reader. Guards the wiring: every key reaches the transform (a key
    dropped or swapped on the way fails here), and the batches are the explicit call's."""
    import dataclasses

    from flaxnets.config import DataConfig
    from flaxnets.data import eval_loader_from_config, train_loader_from_config

    data = DataConfig(crop="inception", interpolation="bicubic", crop_area_range=(0.3, 0.9),
                      crop_aspect_range=(0.5, 2.0), flip=False, inception_fast_mode=False,
                      dct_scaled_decode=True, workers=0)
    prep = {"image_size": 16, "crop": data.crop, "crop_fraction": 0.75, "interpolation": "area",
            "train_interpolation": data.interpolation, "mean": (127.5,) * 3, "std": (127.5,) * 3}
    loader = train_loader_from_config(data, prep, digits, global_batch_size=8, seed=3)
    assert loader._example.options == {
        "crop": "inception", "interpolation": "bicubic", "area_range": (0.3, 0.9), "aspect_ratio_range": (0.5, 2.0),
        "flip": False, "inception_fast_mode": False, "dct_scaled_decode": True, "fallback_crop_fraction": None}
    explicit = train_loader(digits, image_size=16, global_batch_size=8, seed=3, crop="inception",
                            interpolation="bicubic", area_range=(0.3, 0.9), aspect_ratio_range=(0.5, 2.0),
                            flip=False, inception_fast_mode=False, dct_scaled_decode=True)
    np.testing.assert_array_equal(next(loader)["image"], next(explicit)["image"])
    # The augmentation is data.augment's (augment_from_config), with prep's mean/std.
    augmented = train_loader_from_config(dataclasses.replace(data, augment="randaugment"), prep, digits,
                                         global_batch_size=8, seed=3)
    assert augmented._example.stage(0)[1] is not None and loader._example.stage(0)[1] is None

    evaluation = eval_loader_from_config(data, prep, digits, global_batch_size=8)
    batch = evaluation._batch
    assert (batch.image_size, batch.crop, batch.crop_fraction, batch.interpolation) == (16, "inception", 0.75, "area")
    explicit = eval_loader(digits, image_size=16, crop_fraction=0.75, interpolation="area", global_batch_size=8,
                           crop="inception")
    np.testing.assert_array_equal(next(iter(evaluation))["image"], next(iter(explicit))["image"])
