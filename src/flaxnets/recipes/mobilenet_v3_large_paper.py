"""MobileNet v3 Large, paper recipe: RMSProp (TF1), exponential decay, EMA, 1000 epochs at 4096.

Source: Howard et al., "Searching for MobileNetV3" (ICCV 2019), section 6.1.1, as set up by the
seed write-up's fifth run (74.91% top-1 / 92.12% top-5 at epoch 607); the paper reports 75.2%.
RMSProp decay 0.9, momentum 0.9, eps 0.002 inside the root, accumulator from 1.0; lr 0.02 x
batch/192 (0.4267 at 4096) x 0.99^floor(step / 3 epochs), the first 5 epochs replaced by a linear
ramp to the peak; L2 1e-5 on all but BatchNorm; label smoothing 0.1; dropout 0.2; EMA 0.9999.

Command:
    flaxnets train --recipe mobilenet_v3_large_paper --data /data/imagenet --workdir runs/mnv3l_paper
"""

from flaxnets.config import Config
from flaxnets.recipes._mobilenet_v3_paper import paper_config

PUBLISHED_TOP1 = 75.2


def get_config() -> Config:
    """The recipe's configuration."""
    return paper_config("mobilenet_v3_large_paper", "mobilenet_v3_large", "Howard et al. 2019, section 6.1.1")
