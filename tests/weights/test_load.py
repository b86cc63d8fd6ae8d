"""load_weights dispatch and the ImageNet class names."""

import numpy as np
import pytest

from flaxnets.errors import FlaxnetsError
from flaxnets.weights import imagenet_class_names, inspect_weights
from flaxnets.weights.torch import detect_layout


def test_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench, Tinca tinca"
    assert names[281] == "tabby, tabby cat"
    assert names[967] == "espresso"


def test_layout_detection():
    assert detect_layout(["_conv_stem.weight", "_fc.bias"]) == "lukemelas"
    assert detect_layout(["conv_stem.weight", "classifier.bias"]) == "timm"
    with pytest.raises(FlaxnetsError, match="features.0.0.weight"):
        detect_layout(["features.0.0.weight"])


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(FlaxnetsError, match="does not exist"):
        inspect_weights(tmp_path / "nope.pth")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(FlaxnetsError, match="unsupported weights file w.npz"):
        inspect_weights(tmp_path / "w.npz")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FlaxnetsError, match="cannot read"):
        inspect_weights(tmp_path / "bad.pth")


def test_unknown_state_dict_layout_is_named(tmp_path):
    from safetensors.numpy import save_file

    save_file({"features.0.0.weight": np.zeros((2, 3, 3, 3), np.float32)}, str(tmp_path / "tv.safetensors"))
    with pytest.raises(FlaxnetsError, match="unrecognised state-dict layout"):
        inspect_weights(tmp_path / "tv.safetensors")
