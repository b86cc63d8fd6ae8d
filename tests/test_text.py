"""Counts in user-facing messages agree with their noun (issue 21: "1 classes", "1 steps per
epoch"): `flaxnets.text.plural` itself, and a few of the messages that use it."""

from types import SimpleNamespace

import pytest

from flaxnets.errors import FlaxnetsError
from flaxnets.text import noun, plural


@pytest.mark.parametrize("count,word,spec,expected", [
    (1, "class", "", "1 class"),
    (4, "class", "", "4 classes"),
    (0, "image", "", "0 images"),
    (1, "step per epoch", "g", "1 step per epoch"),
    (312.5, "step per epoch", "g", "312.5 steps per epoch"),
    (1_281_167, "example", ",", "1,281,167 examples"),
    (1, "process", "", "1 process"),
    (8, "process", "", "8 processes"),
    (2, "entry", "", "2 entries"),
    (2, "day", "", "2 days"),
    (2, "batch", "", "2 batches"),
    (0.5, "epoch", "g", "0.5 epochs"),
])
def test_plural(count, word, spec, expected):
    assert plural(count, word, spec=spec) == expected


def test_noun_alone():
    assert noun(1, "device") == "device" and noun(4, "device") == "devices"


def test_one_class_one_device_one_process_in_messages():
    from flaxnets.data.loader import _check_batch
    from flaxnets.data.sources import RelabelledSource
    from flaxnets.train.parallel import check_batch_size

    with pytest.raises(FlaxnetsError, match=r"is not among the 1 class of the run \(cat\)"):
        RelabelledSource(SimpleNamespace(class_names=["dog"]), ["cat"], where="val")
    with pytest.raises(FlaxnetsError, match=r"by 1 device x 2 grad_accum_steps = 2$"):
        check_batch_size(3, 1, 2)
    with pytest.raises(FlaxnetsError, match=r"\(global 3 / 1 process\)"):
        _check_batch(3, 1, 2)


def test_start_summary_in_the_singular(tmp_path):
    """A 1-class, 1-step-per-epoch, 1-epoch run on one device: the summary a run prints at start
    (and writes to summary.txt) says "1 class", "1 step per epoch", "1 cpu device in 1 process"."""
    import numpy as np

    from flaxnets.config import Config, ModelConfig, TrainConfig
    from flaxnets.train.loop import start_summary

    config = Config(name="tiny", model=ModelConfig(name="mobilenet_v3_small", num_classes=1),
                    train=TrainConfig(epochs=1, global_batch_size=8))
    text = start_summary(config, workdir=tmp_path, state=SimpleNamespace(params={"w": np.zeros(3)}),
                         mesh=SimpleNamespace(devices=np.zeros(1)), train_examples=8, eval_examples=1,
                         data_classes=1, count_note=None, num_train=8, steps_per_epoch=1.0, num_steps=1,
                         start_step=0)
    for fact in ("3 parameters, 1 class", "train 8 examples, eval 1, 1 class", "x 1 gradient accumulation step",
                 "1 cpu device in 1 process", "1 step per epoch of 8 examples, 1 step (1 epoch)"):
        assert fact in text, (fact, text)
