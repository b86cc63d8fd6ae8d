"""MobileNet v3 Small, paper recipe: RMSProp (TF1), x0.99 every 3 epochs, EMA, Inception preprocessing.

Source: Howard et al., "Searching for MobileNetV3" (ICCV 2019), section 6.1.1; the paper reports
67.4% top-1. Same settings as `mobilenet_v3_large_paper` (see that docstring and docs/RECIPES.md).

Command:
    flaxnets train --recipe mobilenet_v3_small_paper --data /data/imagenet --workdir runs/mnv3s_paper
"""

from flaxnets.config import Config
from flaxnets.recipes._mobilenet_v3_paper import paper_config, paper_sources

PUBLISHED_TOP1 = 67.4

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = paper_sources("mobilenet_v3_small")


def get_config() -> Config:
    """The recipe's configuration."""
    return paper_config("mobilenet_v3_small_paper", "mobilenet_v3_small")
