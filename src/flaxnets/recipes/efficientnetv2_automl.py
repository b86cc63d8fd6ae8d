"""EfficientNetV2 B0-B3, S, M, L, google/automl reference recipes with progressive learning: one
family, seven recipes that differ only by the variant (`efficientnetv2_b0_automl` ...
`efficientnetv2_l_automl`).

Each recipe's Config and SOURCES are `flaxnets.recipes._efficientnetv2_automl`'s for its variant;
its published ImageNet-1k top-1 is the automl README's table (efficientnetv2/README.md: S 83.9,
M 85.2, L 85.7, B0 78.7, B1 79.8, B2 80.5, B3 82.1; the same figures annotate effnetv2_configs.py
`efficientnetv2_params`). `flaxnets recipes --show efficientnetv2_s_automl` prints one with its sources.
"""

from flaxnets.models.efficientnetv2 import TOP1, VARIANTS
from flaxnets.recipes import Recipe
from flaxnets.recipes._efficientnetv2_automl import (
    REGULARISATION, efficientnetv2_automl_config, efficientnetv2_automl_sources,
)


def _doc(variant: str) -> str:
    """The recipe's docstring: title, source and published figure, the values, the command."""
    _, _, _, train_size, eval_size, dropout = VARIANTS[variant]
    magnitude, mix, _ = REGULARISATION[variant]
    name = f"efficientnetv2_{variant}_automl"
    stages = [int(128 + (train_size - 128) * (i + 1) / 4) for i in range(4)]
    if variant.startswith("b"):
        augment = ("EfficientNet-V1's pipeline (preprocess_legacy.py: Inception crop, bicubic, ImageNet mean/std, "
                   f"AutoAugment v0); eval centre crop {eval_size}/({eval_size}+32)")
    else:
        augment = (f"RandAugment 2 layers, magnitude 5 to {magnitude} over the stages"
                   + (f", Mixup and CutMix alpha 0 to {mix}" if mix else "")
                   + f"; eval resizes the whole image to {eval_size}, (x - 128) / 128")
    return f"""EfficientNetV2-{variant.upper()}, google/automl reference recipe: RMSProp, exponential decay, EMA, 350 epochs, progressive learning.

Source: Tan & Le, "EfficientNetV2: Smaller Models and Faster Training" (ICML 2021), and google/automl
efficientnetv2 (hparams.py base_config, effnetv2_configs.py, main.py); the automl README reports
{TOP1[variant]}% ImageNet-1k top-1.
Progressive learning: 4 stages of a quarter of the steps each at {", ".join(map(str, stages))} pixels
(from ibase 128 to the training size {train_size}; main.py), evaluation at {eval_size}. {augment}.
Dropout {dropout} throughout (the reference does not stage it), stochastic depth 0.2. RMSProp decay 0.9,
momentum 0.9, eps 1e-3; lr 0.016 x batch/256 x 0.97^floor(step / 2.4 epochs), 5 warmup epochs; L2 1e-5
on all but BatchNorm and biases; label smoothing 0.1; EMA 0.9999 with BatchNorm statistics; batch 4096;
1,256,144 training images (ImageNet train less minival). What flaxnets does differently (half-batch
Mixup / CutMix, crop fallback, per-replica BatchNorm) is listed in recipes/_efficientnetv2_automl.py.

Command:
    flaxnets train --recipe {name} --data /data/imagenet --workdir runs/{name}
"""


def _recipe(variant: str) -> Recipe:
    return Recipe(name=f"efficientnetv2_{variant}_automl", doc=_doc(variant),
                  get_config=lambda: efficientnetv2_automl_config(variant),
                  sources=efficientnetv2_automl_sources(variant), published_top1=TOP1[variant])


RECIPES = tuple(_recipe(v) for v in ("b0", "b1", "b2", "b3", "s", "m", "l"))
