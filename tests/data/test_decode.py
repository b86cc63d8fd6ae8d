"""Bad data: CMYK, greyscale and PNG-as-JPEG decode correctly; truncated and empty files are
skipped, counted and warned about once per path, in training and in evaluation."""

import warnings

import numpy as np
import pytest
from _data_fixtures import encode, smooth_image, write_class_folders
from bad_files import UNDECODABLE, reported, write_odd_files

from flaxnets.data import eval_loader, train_loader
from flaxnets.data.decode import DecodeError, decode_crop, decode_image, image_size

IMAGE = smooth_image(48, 64, seed=3)


def test_cmyk_jpeg_decodes_to_rgb():
    data = encode(IMAGE, "JPEG", mode="CMYK")
    decoded = decode_image(data)
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - IMAGE).mean() < 4


def test_greyscale_jpeg_decodes_to_three_equal_channels():
    grey = np.asarray(__import__("PIL.Image").Image.fromarray(IMAGE).convert("L"))
    decoded = decode_image(encode(IMAGE, "JPEG", mode="L"))
    assert decoded.shape == (48, 64, 3)
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 1] == decoded[..., 2]).all()
    assert np.abs(decoded[..., 0].astype(int) - grey).mean() < 3


def test_png_named_jpeg_decodes_exactly_by_magic_bytes(tmp_path):
    path = tmp_path / "n01739381_1309.JPEG"
    path.write_bytes(encode(IMAGE, "PNG"))
    np.testing.assert_array_equal(decode_image(path.read_bytes()), IMAGE)
    assert image_size(path.read_bytes()) == (48, 64)


@pytest.mark.parametrize("data", [b"", encode(IMAGE, "JPEG")[:600], b"\xff\xd8garbage"],
                         ids=["empty", "truncated", "corrupt"])
def test_undecodable_data_raises_decode_error(data):
    with pytest.raises(DecodeError):
        decode_image(data)


def test_dct_scaled_crop_decode_is_close_to_the_full_decode():
    big = smooth_image(256, 320, seed=5)
    data = encode(big, "JPEG")
    box = (16, 40, 200, 240)
    fast = decode_crop(data, box, (64, 64), dct_scaled=True)
    full = decode_crop(data, box, (64, 64), dct_scaled=False)
    assert full.shape == (200, 240, 3)
    assert fast.shape[0] >= 64 and fast.shape[1] >= 64 and fast.shape[0] < 200
    import cv2

    a = cv2.resize(fast, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    b = cv2.resize(full, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(a - b).mean() < 3


def _bad_dataset(root):
    """Two class folders of good JPEGs, with a zero-byte, a truncated, a PNG-named and a CMYK
    .jpg among them; returns the undecodable paths."""
    write_class_folders(root, [6, 6])
    odd = {**write_odd_files(root / "c0"), **{f"c1/{k}": v for k, v in write_odd_files(root / "c1", seed=1).items()}}
    return {str(path) for name, path in odd.items() if name.split("/")[-1] in UNDECODABLE}


def _assert_reported_once_each(capsys, records, bad):
    """Each bad path named on exactly one stderr line, and no Python warning beside it (the
    policy of `flaxnets.data.decode.report_bad_file`)."""
    named = reported(capsys.readouterr().err)
    assert sorted(named) == sorted(bad)
    assert not [w for w in records if "undecodable" in str(w.message)]


def test_training_substitutes_bad_files_and_reports_each_once(tmp_path, capsys):
    bad = _bad_dataset(tmp_path / "train")
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        loader = train_loader(tmp_path, image_size=16, global_batch_size=5, seed=0)
        batches = [next(loader) for _ in range(3 * loader.steps_per_epoch)]  # three epochs
    assert loader.num_examples == 20
    assert all(b["image"].shape == (5, 16, 16, 3) for b in batches)
    assert all(set(b) == {"image", "label"} for b in batches)  # the skipped indices are not batch data
    assert set(loader.skipped()) == bad  # collected for the end-of-training count
    _assert_reported_once_each(capsys, records, bad)


def test_evaluation_counts_and_reports_bad_files(tmp_path, capsys):
    bad = _bad_dataset(tmp_path / "val")
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        loader = eval_loader(tmp_path, image_size=16, crop_fraction=0.875,
                             interpolation="bicubic", global_batch_size=4)
        masks = [b["mask"] for b in loader]
        list(loader)  # a second pass reports no more
    assert loader.num_examples == 20
    assert sum(int(m.sum()) for m in masks) == 16  # the PNG-named and CMYK files are evaluated
    coverage = loader.coverage()
    assert coverage["num_evaluated"] == 16 and coverage["num_skipped"] == 4
    assert set(coverage["skipped"]) == bad
    _assert_reported_once_each(capsys, records, bad)
