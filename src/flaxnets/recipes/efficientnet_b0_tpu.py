"""EfficientNet-B0, TF-TPU reference recipe: RMSProp (TF1), exponential decay, EMA, 350 epochs.

Source: Tan & Le, "EfficientNet" (ICML 2019), and tensorflow/tpu models/official/efficientnet
(main.py flags, utils.build_learning_rate / build_optimizer); the paper reports 77.1% top-1.
Resolution 224, eval centre crop 224/(224+32), bicubic. RMSProp decay 0.9, momentum 0.9,
eps 1e-3 inside the root, accumulator from 1.0; lr 0.016 x batch/256 x 0.97^floor(step / 2.4 epochs)
with steps_per_epoch = 1,281,167 / batch as a real number and the first 5 epochs replaced by a linear
ramp to the peak; L2 1e-5 on all but BatchNorm; label smoothing 0.1; stochastic depth 0.2; EMA
0.9999 including BatchNorm statistics (TF's num_updates warm-up); ImageNet mean/std inputs;
BatchNorm statistics per group of 256 (per replica on the reference's 8-core slice).

The seed write-up's best JAX run of this recipe reached 76.04% (float32, batch 2048; bfloat16
75.80%). `flaxnets lr efficientnet_b0_tpu --steps 3126,3127` shows the first decayed value.

Command:
    flaxnets train --recipe efficientnet_b0_tpu --data /data/imagenet --workdir runs/efficientnet_b0_tpu
"""

from flaxnets.config import Config
from flaxnets.recipes._efficientnet_tpu import efficientnet_tpu_config, efficientnet_tpu_sources

PUBLISHED_TOP1 = 77.1

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = efficientnet_tpu_sources("b0")


def get_config() -> Config:
    """The recipe's configuration."""
    return efficientnet_tpu_config("b0")
