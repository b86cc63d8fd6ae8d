"""EfficientNet B0-B7, TF-TPU reference recipes: one family, eight recipes that differ only by the
variant (`efficientnet_b0_tpu` ... `efficientnet_b7_tpu`).

Each recipe's Config and SOURCES are `flaxnets.recipes._efficientnet_tpu`'s for its variant (the
per-variant resolution and dropout come from the model family's table); its published top-1 is
the paper's (Tan & Le 2019, Table 2) and its docstring, which `flaxnets recipes` titles it by and
whose command a test runs through the CLI parser, is written below from the same facts.
`flaxnets recipes --show efficientnet_b3_tpu` prints one of them with its sources.
"""

from flaxnets.models.efficientnet import SCALING
from flaxnets.recipes import Recipe
from flaxnets.recipes._efficientnet_tpu import CROP_PADDING, efficientnet_tpu_config, efficientnet_tpu_sources

#: The paper's ImageNet top-1 of each variant (Tan & Le, "EfficientNet", ICML 2019, Table 2).
PUBLISHED_TOP1 = {"b0": 77.1, "b1": 79.1, "b2": 80.1, "b3": 81.6, "b4": 82.9, "b5": 83.6, "b6": 84.0, "b7": 84.3}

#: What a variant's docstring adds: B0 is the one the seed trained.
_NOTES = {
    "b0": "The seed write-up's best JAX run of this recipe reached 76.04% (float32, batch 2048; bfloat16\n"
          "75.80%). `flaxnets lr efficientnet_b0_tpu --steps 3126,3127` shows the first decayed value.\n\n",
}


def _doc(variant: str) -> str:
    """The recipe's docstring: title, source and published figure, the values, the command."""
    size = SCALING[variant][2]
    name = f"efficientnet_{variant}_tpu"
    return f"""EfficientNet-{variant.upper()}, TF-TPU reference recipe: RMSProp (TF1), exponential decay, EMA, 350 epochs.

Source: Tan & Le, "EfficientNet" (ICML 2019), and tensorflow/tpu models/official/efficientnet
(main.py flags, utils.build_learning_rate / build_optimizer); the paper reports {PUBLISHED_TOP1[variant]}% top-1.
Resolution {size}, eval centre crop {size}/({size}+{CROP_PADDING}), bicubic. RMSProp decay 0.9, momentum 0.9,
eps 1e-3 inside the root, accumulator from 1.0; lr 0.016 x batch/256 x 0.97^floor(step / 2.4 epochs)
with steps_per_epoch = 1,281,167 / batch as a real number and the first 5 epochs replaced by a linear
ramp to the peak; L2 1e-5 on all but BatchNorm; label smoothing 0.1; stochastic depth 0.2; EMA
0.9999 including BatchNorm statistics (TF's num_updates warm-up); ImageNet mean/std inputs;
BatchNorm statistics per group of 256 (per replica on the reference's 8-core slice).

{_NOTES.get(variant, "")}Command:
    flaxnets train --recipe {name} --data /data/imagenet --workdir runs/{name}
"""


def _recipe(variant: str) -> Recipe:
    return Recipe(name=f"efficientnet_{variant}_tpu", doc=_doc(variant),
                  get_config=lambda: efficientnet_tpu_config(variant),
                  sources=efficientnet_tpu_sources(variant), published_top1=PUBLISHED_TOP1[variant])


RECIPES = tuple(_recipe(f"b{i}") for i in range(8))
