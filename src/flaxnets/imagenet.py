"""ImageNet-1k (ILSVRC2012) as published: its split sizes and its classes, index = class id.

Kept free of JAX and of the data pipeline, so that `flaxnets report` can tell whether a run's
data is the data the recipes' published figures were measured on without importing either.
"""

from __future__ import annotations

import functools
import importlib.resources

TRAIN_IMAGES = 1_281_167
VAL_IMAGES = 50_000
NUM_CLASSES = 1_000


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """(WordNet synset id, class name) for each of the 1000 classes, in synset-sorted order
    (0 = n01440764 ... 999 = n15075141, as in Keras, timm and TFDS)."""
    text = importlib.resources.files("flaxnets").joinpath("assets/imagenet_classes.txt").read_text("utf-8")
    return tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line)


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet synset ids (n01440764 ...), index = class id."""
    return [synset for synset, _ in imagenet_classes()]
