"""MobileNet v3 Small, paper recipe: RMSProp (TF1), exponential decay, EMA, 1000 epochs at 4096.

Source: Howard et al., "Searching for MobileNetV3" (ICCV 2019), section 6.1.1; the paper reports
67.4% top-1. Same settings as `mobilenet_v3_large_paper` (see that docstring).

Command:
    flaxnets train --recipe mobilenet_v3_small_paper --data /data/imagenet --workdir runs/mnv3s_paper
"""

from flaxnets.config import Config
from flaxnets.recipes._mobilenet_v3_paper import paper_config

PUBLISHED_TOP1 = 67.4


def get_config() -> Config:
    """The recipe's configuration."""
    return paper_config("mobilenet_v3_small_paper", "mobilenet_v3_small", "Howard et al. 2019, section 6.1.1")
