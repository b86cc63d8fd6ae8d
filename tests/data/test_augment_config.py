"""`augment_from_config`: the one builder of the host-side augmentation, for training and for
`flaxnets benchmark data`, and the op table every op is defined in once."""

import numpy as np

from flaxnets.config import DataConfig
from flaxnets.data import augment as A
from flaxnets.data.benchmark import make_augment


def test_config_builds_the_policy_it_names_with_its_values():
    assert A.augment_from_config(DataConfig()) is None
    rand = A.augment_from_config(DataConfig(
        augment="randaugment", randaugment_num_layers=3, randaugment_magnitude=7.0,
        randaugment_exclude_ops=("Cutout",), translate_const=50.0))
    assert isinstance(rand, A.RandAugment)
    assert (rand.num_layers, rand.magnitude, rand.translate_const) == (3, 7.0, 50.0)
    assert "Cutout" not in rand.ops
    auto = A.augment_from_config(DataConfig(augment="autoaugment", autoaugment_policy="simple"))
    assert isinstance(auto, A.AutoAugment) and auto.policy == "simple"


def test_random_erasing_follows_the_policy_on_uint8_images():
    chain = A.augment_from_config(DataConfig(augment="randaugment", random_erasing=1.0),
                                  mean=(120.0,) * 3, std=(60.0,) * 3)
    assert [type(op) for op in chain.ops] == [A.RandAugment, A.RandomErasing]
    image = np.full((32, 32, 3), 7, np.uint8)
    assert (chain(image, np.random.default_rng(0)) != 7).any()


def test_benchmark_presets_are_tf_visions_defaults():
    assert make_augment("none") is None
    rand = make_augment("randaugment")
    assert (rand.num_layers, rand.magnitude, rand.cutout_const, rand.translate_const) == (2, 15.0, 40.0, 100.0)
    auto = make_augment("autoaugment")
    assert (auto.policy, auto.cutout_const, auto.translate_const) == ("v0", 100.0, 250.0)


def test_every_op_is_one_table_entry():
    assert set(A.NAME_TO_FUNC) == set(A.OPS)
    assert A.RANDAUGMENT_OPS == tuple(name for name, op in A.OPS.items() if op.randaugment)
    signed = {name for name, op in A.OPS.items() if op.signed}
    assert signed == {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}
    for name in signed:
        positive = A.level_to_arg(name, 5.0, cutout_const=40.0, translate_const=100.0)
        assert A.level_to_arg(name, 5.0, cutout_const=40.0, translate_const=100.0, negate=True) == (-positive[0],)
