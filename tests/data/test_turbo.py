"""Region JPEG decoding (flaxnets.data.turbo): the pixels equal a full decode's, for every
chroma subsampling, greyscale, progressive and restart-marker files, edge boxes and DCT scales;
whatever it cannot decode exactly falls back to the full-decode path."""

import io
import platform

import numpy as np
import pytest
import simplejpeg
from _data_fixtures import smooth_image
from PIL import Image

from flaxnets.data import decode, turbo
from flaxnets.data.decode import DecodeError, decode_crop
from flaxnets.data.transforms import eval_transform, train_transform


def _textured(height, width, seed):
    """Smooth colour fields plus per-pixel noise, so chroma edges and fine detail both occur."""
    noise = np.random.default_rng(seed).normal(0, 25, (height, width, 3))
    return (smooth_image(height, width, seed).astype(float) + noise).clip(0, 255).astype(np.uint8)


def _jpeg(image, mode="RGB", **options):
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


# Odd sizes so that boxes meet partial iMCUs at the right and bottom edges.
_IMAGE = _textured(203, 317, seed=1)
FILES = {
    "420": _jpeg(_IMAGE, subsampling=2),
    "422": _jpeg(_IMAGE, subsampling=1),
    "444": _jpeg(_IMAGE, subsampling=0),
    "grey": _jpeg(_IMAGE, mode="L"),
    "progressive": _jpeg(_IMAGE, progressive=True),
    "restart_markers": _jpeg(_IMAGE, restart_marker_rows=1),
}


def _boxes(height, width, count, seed):
    rng = np.random.default_rng(seed)
    boxes = [(0, 0, height, width), (0, 0, 1, 1), (height - 1, width - 1, 1, 1),
             (0, width - 17, height, 17), (height - 9, 0, 9, width)]
    for _ in range(count):
        crop_h, crop_w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        boxes.append((int(rng.integers(0, height - crop_h + 1)),
                      int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w))
    return boxes


@pytest.fixture
def without_turbo(monkeypatch):
    """The fallback path: as if no TurboJPEG 3 library could be loaded."""
    monkeypatch.setattr(turbo, "_handle", lambda: None)


def test_library_loads_on_the_tested_platform():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the pinned turbojpeg wheel exists for Linux x86_64")
    assert turbo.available(), turbo.describe()
    assert "libturbojpeg" in turbo.library_path()


@pytest.mark.parametrize("fast_dct", [True, False])
@pytest.mark.parametrize("kind", sorted(FILES))
def test_region_equals_full_decode_sliced(kind, fast_dct):
    data = FILES[kind]
    full = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=fast_dct)
    for box in _boxes(*full.shape[:2], count=60, seed=len(kind)):
        y, x, h, w = box
        region = turbo.decode_region(data, box, fast_dct=fast_dct)
        assert region is not None, (kind, box)
        np.testing.assert_array_equal(region, full[y : y + h, x : x + w], err_msg=f"{kind} {box}")


@pytest.mark.parametrize("kind", ["420", "444", "progressive"])
def test_dct_scaled_region_equals_the_fallback_path(kind, monkeypatch):
    big = _textured(700, 900, seed=2)
    data = _jpeg(big, subsampling={"444": 0}.get(kind, 2), progressive=kind == "progressive")
    rng = np.random.default_rng(3)
    cases = [((0, 0, 700, 900), (224, 224)), ((10, 20, 600, 800), (64, 64)),
             ((0, 0, 700, 900), (80, 100)), ((699, 899, 1, 1), (8, 8))]
    for _ in range(25):
        crop_h, crop_w = int(rng.integers(60, 701)), int(rng.integers(60, 901))
        box = (int(rng.integers(0, 701 - crop_h)), int(rng.integers(0, 901 - crop_w)), crop_h, crop_w)
        cases.append((box, (int(rng.integers(16, 225)),) * 2))
    scaled_cases = 0
    for box, out_size in cases:
        region = turbo.decode_region(data, box, out_size)
        assert region is not None
        with monkeypatch.context() as m:
            m.setattr(turbo, "_handle", lambda: None)
            fallback = decode_crop(data, box, out_size, dct_scaled=True)
        np.testing.assert_array_equal(region, fallback, err_msg=f"{box} {out_size}")
        assert region.shape[0] >= min(out_size[0], 1) and region.shape[1] >= 1
        scaled_cases += region.shape[0] < box[2]
    assert scaled_cases >= 10  # most cases really decoded at a reduced DCT scale


def test_transforms_are_identical_with_and_without_region_decoding(monkeypatch):
    data = FILES["420"]
    with_turbo = [train_transform(data, np.random.default_rng(seed), image_size_px=64)
                  for seed in range(20)]
    with_turbo.append(eval_transform(data, image_size_px=64, crop_fraction=0.875,
                                     interpolation="bicubic"))
    monkeypatch.setattr(turbo, "_handle", lambda: None)
    without = [train_transform(data, np.random.default_rng(seed), image_size_px=64)
               for seed in range(20)]
    without.append(eval_transform(data, image_size_px=64, crop_fraction=0.875,
                                  interpolation="bicubic"))
    for a, b in zip(with_turbo, without, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unsupported_or_damaged_files_fall_back_to_the_full_decode():
    cmyk = _jpeg(_IMAGE, mode="CMYK")
    assert turbo.decode_region(cmyk, (0, 0, 10, 10)) is None
    decoded = decode_crop(cmyk, (0, 0, 10, 10), (10, 10), dct_scaled=False)
    assert decoded.shape == (10, 10, 3)

    good = FILES["420"]
    truncated = good[: len(good) * 3 // 4]
    # The crop lies in the intact top of the file, yet the file is rejected as a whole.
    assert turbo.decode_region(truncated, (0, 0, 8, 8)) is None
    with pytest.raises(DecodeError):
        decode_crop(truncated, (0, 0, 8, 8), (8, 8), dct_scaled=False)

    corrupt = good[:400] + bytes(range(256)) * 4 + good[-2:]
    assert turbo.decode_region(corrupt, (0, 0, 203, 317)) is None
    assert turbo.decode_region(good, (0, 0, 204, 317)) is None  # box outside the image
    assert turbo.decode_region(b"\xff\xd8garbage\xff\xd9", (0, 0, 1, 1)) is None


def test_buffers_other_than_bytes_are_accepted():
    data = FILES["420"]
    want = turbo.decode_region(data, (3, 5, 40, 50))
    for buffer in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(turbo.decode_region(buffer, (3, 5, 40, 50)), want)


def test_region_decoding_in_threads_matches():
    from concurrent.futures import ThreadPoolExecutor

    data = FILES["422"]
    full = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True)
    boxes = _boxes(*full.shape[:2], count=64, seed=9)
    with ThreadPoolExecutor(4) as pool:
        regions = list(pool.map(lambda box: turbo.decode_region(data, box), boxes))
    for (y, x, h, w), region in zip(boxes, regions, strict=True):
        np.testing.assert_array_equal(region, full[y : y + h, x : x + w])


def test_decode_module_uses_the_region_path(monkeypatch):
    calls = []
    real = turbo.decode_region
    monkeypatch.setattr(turbo, "decode_region", lambda *a, **k: calls.append(a) or real(*a, **k))
    decode.decode_crop(FILES["420"], (5, 7, 50, 60), (32, 32), dct_scaled=False)
    assert len(calls) == 1
