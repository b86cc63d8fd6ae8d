"""PyTorch state dicts: timm layout and the EfficientNet-PyTorch (lukemelas) layout.

timm:      conv_stem, bn1, blocks.S.I.<the block's layout_names("timm")>, [blocks.S+1.0.conv/bn1,
           conv_head, norm_head | conv_head, bn2], classifier (MobileNetV2/V3/V4, EfficientNet)
lukemelas: _conv_stem, _bn0, _blocks.N.{_expand_conv, _bn0, _depthwise_conv, _bn1, _se_reduce,
           _se_expand, _project_conv, _bn2}, _conv_head, _bn1, _fc

Files: .pth / .pt / .bin through `torch.load(weights_only=True)` (torch imported only then),
.safetensors through `safetensors.numpy`. Each of our layers gets its checkpoint name from the
block that defines it (`layout_names`); checkpoint layers are put in our forward order by those
names and matched one to one with our layers (see `weights.common`), each pair checked for kind
and shape.
Conversions: conv OIHW -> HWIO (a depthwise (C, 1, k, k) becomes (k, k, 1, C) by the same
transpose), linear (out, in) -> (in, out), a 1x1 conv <-> a dense layer where one side uses the
other, BatchNorm running_mean / running_var -> our batch statistics, layer scale `gamma` as is.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np

from flaxnets.errors import FlaxnetsError
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD
from flaxnets.weights.common import (
    Layer,
    WeightsInfo,
    as_float32,
    first_few,
    model_layers,
    origin_info,
)

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A PyTorch checkpoint as {name: float32 array}; unwraps {"state_dict": ...} wrappers and
    DataParallel's "module." prefix, drops num_batches_tracked."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        raw = load_file(str(path))
    else:
        import torch

        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file
            raise FlaxnetsError(f"cannot read {path} as a PyTorch checkpoint: {str(e).splitlines()[0]}") from e
        for wrapper in ("state_dict_ema", "state_dict", "model"):
            if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
                raw = raw[wrapper]
                break
        raw = {k: v.detach().float().numpy() for k, v in raw.items() if hasattr(v, "detach")}
    out = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        if not key.endswith("num_batches_tracked"):
            out[key] = as_float32(value)
    return out


def detect_layout(keys) -> str:
    """"timm" or "lukemelas" from the key names; FlaxnetsError otherwise."""
    keys = set(keys)
    if "_conv_stem.weight" in keys:
        return "lukemelas"
    if "conv_stem.weight" in keys:
        return "timm"
    raise FlaxnetsError(
        f"unrecognised state-dict layout (first keys: {first_few(sorted(keys), 3)}); expected timm "
        "(conv_stem.weight, blocks.S.B...) or EfficientNet-PyTorch (_conv_stem.weight, _blocks.N...)"
    )


def inspect_torch(path: str | pathlib.Path, state_dict: dict | None = None) -> WeightsInfo:
    """Layout and origin of a PyTorch checkpoint, without a model.

    Origin: EfficientNet-PyTorch checkpoints are all TF ports (TF SAME padding, eps 1e-3).
    timm: a `tf_` model name (from a config.json beside the file, as the Hugging Face hub
    stores it, else from the file name) marks a TF port; anything else is a native PyTorch
    model with symmetric padding and eps 1e-5. Mean/std: the config.json's where present;
    EfficientNet-Lite (no squeeze-excite) uses (x - 127.5) / 127.5; otherwise None (the model's
    default applies).
    """
    path = pathlib.Path(path)
    sd = read_state_dict(path) if state_dict is None else state_dict
    layout = detect_layout(sd)
    has_se = any("_se_reduce." in k or "se.conv_reduce." in k for k in sd)
    if layout == "lukemelas":
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if has_se else (INCEPTION_MEAN, INCEPTION_STD)
        return origin_info(layout, "tf", mean=mean, std=std)
    config = path.with_name("config.json")
    architecture, mean, std = None, None, None
    if config.is_file():
        cfg = json.loads(config.read_text())
        architecture = cfg.get("architecture")
        pretrained = cfg.get("pretrained_cfg", {})
        if "mean" in pretrained and "std" in pretrained:
            mean = tuple(255.0 * m for m in pretrained["mean"])
            std = tuple(255.0 * s for s in pretrained["std"])
    name = architecture or path.name
    origin = "tf" if re.search(r"(^|[^a-z])tf_", name) else "torch"
    return origin_info(layout, origin, mean=mean, std=std, architecture=architecture)


def _split(key: str) -> tuple[str, str]:
    module, _, tensor = key.rpartition(".")
    return module, tensor


def layout_names(model, layout: str) -> dict[tuple, str]:
    """The checkpoint module name of each of our weight-owning layers (by path) in `layout`
    ("timm" or "lukemelas"), as the network and its blocks define them
    (`blocks.ConvNet.layout_names`, each block's `layout_names`)."""
    if layout not in ("timm", "lukemelas"):
        raise FlaxnetsError(f"unknown layout {layout!r}; expected 'timm' or 'lukemelas'")
    return model.layout_names(layout)


def checkpoint_layers(state_dict: dict[str, np.ndarray], order: dict[str, int],
                      layout: str) -> list[tuple[str, str, dict]]:
    """The checkpoint's layers in our forward order (`order`: module name -> position):
    (module name, kind conv|linear|bn|scale, {tensor: key})."""
    modules: dict[str, dict[str, str]] = {}
    for key in state_dict:
        module, tensor = _split(key)
        modules.setdefault(module, {})[tensor] = key
    ranked = []
    for module, tensors in modules.items():
        if module not in order:
            raise FlaxnetsError(f"unsupported {layout} module {module!r} (not a layer of this model)")
        weight = state_dict[tensors["weight"]] if "weight" in tensors else None
        if "running_mean" in tensors:
            kind = "bn"
        elif set(tensors) == {"gamma"}:
            kind = "scale"
        elif weight is not None and weight.ndim == 4:
            kind = "conv"
        elif weight is not None and weight.ndim == 2:
            kind = "linear"
        else:
            raise FlaxnetsError(f"unsupported tensors {sorted(tensors)} in module {module!r}")
        ranked.append((order[module], module, kind, tensors))
    ranked.sort(key=lambda r: r[0])
    return [(module, kind, tensors) for _, module, kind, tensors in ranked]


def _convert(array: np.ndarray, source_kind: str, target: Layer) -> np.ndarray:
    """A checkpoint weight in our layout for `target` (its kernel)."""
    if source_kind == "conv":
        hwio = array.transpose(2, 3, 1, 0)
        if target.kind == "dense" and hwio.shape[:2] == (1, 1):
            return hwio[0, 0]
        return hwio
    if target.kind in ("conv", "depthwise"):
        return array.T[None, None]
    return array.T


_COMPATIBLE = {"conv": {"conv", "depthwise", "dense"}, "linear": {"dense", "conv"}, "bn": {"bn"},
               "scale": {"scale"}}
_BN_ROLE = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def load_torch(model, path, *, skip_classifier: bool = False, strict: bool = True) -> WeightsInfo:
    """Load a timm or EfficientNet-PyTorch state dict into `model` (in place).

    Raises FlaxnetsError naming the first checkpoint tensor whose shape or kind does not fit,
    with both shapes, and (with strict) the first few missing / unexpected layers.
    """
    state_dict = read_state_dict(path)
    info = inspect_torch(path, state_dict)
    ours = model_layers(model)
    names = layout_names(model, info.layout)
    ckpt = checkpoint_layers(state_dict, {names[layer.path]: i for i, layer in enumerate(ours)},
                             info.layout)
    if skip_classifier:
        if ckpt and ckpt[-1][1] == "linear":
            info.skipped += sorted(ckpt[-1][2].values())
            ckpt = ckpt[:-1]
        if ours and ours[-1].kind == "dense":
            ours = ours[:-1]
    if len(ckpt) != len(ours):
        unexpected = [m for m, _, _ in ckpt[len(ours):]]
        missing = [layer.name for layer in ours[len(ckpt):]]
        if strict:
            raise FlaxnetsError(
                f"{path}: {len(ckpt)} checkpoint layers for {len(ours)} model layers; "
                f"missing: [{first_few(missing)}]; unexpected: [{first_few(unexpected)}]"
            )
        info.missing += missing
        info.skipped += [k for _, _, t in ckpt[len(ours):] for k in sorted(t.values())]
    updates = []
    for (module, kind, tensors), layer in zip(ckpt, ours):
        if layer.kind not in _COMPATIBLE[kind]:
            raise FlaxnetsError(f"checkpoint layer {module!r} ({kind}) meets model layer {layer.name} ({layer.kind})")
        for tensor, key in tensors.items():
            if kind == "bn":
                role = _BN_ROLE.get(tensor)
                value = state_dict[key]
            elif kind == "scale":
                role, value = tensor, state_dict[key]
            elif tensor == "weight":
                role, value = "kernel", _convert(state_dict[key], kind, layer)
            elif tensor == "bias":
                role, value = "bias", state_dict[key]
            else:
                role = None
            if role is None or role not in layer.arrays:
                raise FlaxnetsError(f"checkpoint tensor {key} has no counterpart in model layer {layer.name}")
            target = layer.arrays[role]
            if tuple(value.shape) != tuple(target.value.shape):
                raise FlaxnetsError(
                    f"checkpoint tensor {key} {tuple(state_dict[key].shape)} does not fit model "
                    f"{layer.name}.{role} {tuple(target.value.shape)}"
                    + (f" (converted to {tuple(value.shape)})" if value.shape != state_dict[key].shape else "")
                )
            updates.append((target, value))
        provided = {_BN_ROLE[t] if kind == "bn" else {"weight": "kernel"}.get(t, t) for t in tensors}
        absent = sorted(set(layer.arrays) - provided)
        if absent:
            if strict:
                raise FlaxnetsError(f"checkpoint layer {module!r} lacks {absent} of model layer {layer.name}")
            info.missing += [f"{layer.name}.{r}" for r in absent]
    import jax.numpy as jnp

    for target, value in updates:
        target.value = jnp.asarray(value, dtype=target.value.dtype)
    info.loaded = len(updates)
    return info


# ----------------------------------------------------------------------------- export


def export_state_dict(model, layout: str = "timm") -> dict[str, np.ndarray]:
    """Our model's weights as a PyTorch-style state dict (numpy arrays) in `layout`
    ("timm" or "lukemelas"), named by `layout_names`, for other tools and for round-trip tests.
    The classifier is a linear layer; every other layer a convolution (the pre-logits layer
    a 1x1 one, as in timm)."""
    names = layout_names(model, layout)
    sd: dict[str, np.ndarray] = {}
    for layer in model_layers(model):
        name = names[layer.path]
        # Copies: a NumPy view of a CPU device buffer would change when a train step donates it.
        arrays = {k: np.array(v.value, np.float32) for k, v in layer.arrays.items()}
        if layer.kind == "bn":
            for tensor, role in _BN_ROLE.items():
                sd[f"{name}.{tensor}"] = arrays[role]
            continue
        if layer.kind == "scale":
            sd[f"{name}.gamma"] = arrays["gamma"]
            continue
        kernel = arrays["kernel"]
        if layer.path == ("classifier",):
            sd[f"{name}.weight"] = (kernel[0, 0] if kernel.ndim == 4 else kernel).T
        else:
            sd[f"{name}.weight"] = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T[:, :, None, None]
        if "bias" in arrays:
            sd[f"{name}.bias"] = arrays["bias"]
    return sd
