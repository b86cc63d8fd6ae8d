"""The device augmentation (`flaxnets.data.augment_device`, jax.numpy) against the host ops
(`flaxnets.data.augment`, NumPy/OpenCV, themselves bit-exact with TF-Vision's goldens).

On real photos (scikit-image's samples and the golden inputs), every op of AutoAugment v0 and
RandAugment at several magnitudes and both signs, and whole policies with every bundled recipe's
arguments over 64 examples. The issue allows at most 1 grey level on at most 0.1% of the pixels
where float arithmetic differs; measured on the CPU backend (jax 0.10.2, 2026-12-02) every
pixel is equal, so these tests assert bit-exactness. (`benchmarks/accelerator_check.py` measures
the same comparison on an accelerator.)
"""

import dataclasses
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from flaxnets.config import DataConfig, apply_overrides
from flaxnets.data import augment as A
from flaxnets.data import augment_device as D
from flaxnets.recipes import list_recipes, load_recipe
from flaxnets.train import parallel
from flaxnets.train.from_config import device_augment_from_config

GOLDENS = np.load(Path(__file__).parent / "goldens" / "augment_ops.npz")
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
POLICY_OPS = sorted({name for sub in A.POLICIES["v0"] for name, _, _ in sub} | set(A.RANDAUGMENT_OPS))
LEVELS = (0.0, 3.0, 7.0, 10.0, 15.0)


def _photo(name: str, height: int, width: int) -> np.ndarray:
    return cv2.resize(getattr(skimage.data, name)(), (width, height), interpolation=cv2.INTER_AREA)


PHOTOS = {
    "chelsea": _photo("chelsea", 96, 128),
    "astronaut": _photo("astronaut", 112, 112),
    "coffee": _photo("coffee", 64, 96),
    "golden_astronaut": GOLDENS["input_astronaut"],  # 29 x 37: odd sizes
}

_apply = jax.jit(lambda images, batch: D.augment_batch(
    images, batch, noise_table=A.erasing_noise_table(MEAN, STD)))


def _measure(device: np.ndarray, host: np.ndarray) -> tuple[int, int]:
    diff = np.abs(device.astype(np.int16) - host.astype(np.int16))
    return int(np.count_nonzero(diff)), int(diff.max(initial=0))


def test_the_device_knows_every_op():
    assert set(D._FORMS) == set(A.OPS)
    assert set(POLICY_OPS) == set(A.OPS)  # v0 and RandAugment together use all 16


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_every_op_at_several_magnitudes_equals_the_host_op(photo):
    image = PHOTOS[photo]
    height, width = image.shape[:2]
    cases = [(name, level, negate) for name in POLICY_OPS for level in LEVELS
             for negate in ((False, True) if A.OPS[name].signed else (False,))]
    hosts, ops, args = [], [], []
    for i, (name, level, negate) in enumerate(cases):
        op_args = A.level_to_arg(name, level, cutout_const=40.0, translate_const=100.0, negate=negate)
        # The same generator state on both sides: Cutout draws its centre from it.
        hosts.append(A.apply_op(name, image, op_args, np.random.default_rng(i)))
        ops.append([A.OP_CODES[name]])
        args.append(A.device_args(name, op_args, height, width, np.random.default_rng(i))[None])
    batch = {"augment_ops": np.array(ops, np.int32), "augment_args": np.stack(args),
             "erase_boxes": np.zeros((len(cases), 0, 5), np.int32)}
    out = np.asarray(_apply(np.repeat(image[None], len(cases), axis=0), batch))
    for (name, level, negate), device, host in zip(cases, out, hosts):
        count, worst = _measure(device, host)
        assert count == 0, f"{name} level {level} negate {negate}: {count} pixels differ, max {worst}"
    changed = {name for (name, _, _), host in zip(cases, hosts) if not np.array_equal(host, image)}
    assert changed == set(POLICY_OPS)  # every op did something at some magnitude


def _recipe_policies():
    """Every distinct augmentation of the bundled recipes: (recipe names, DataConfig)."""
    found = {}
    for name in list_recipes():
        data = load_recipe(name).data
        if data.augment in ("autoaugment", "randaugment"):
            found.setdefault(data, []).append(name)
    return [(",".join(names), data) for data, names in found.items()]


RECIPE_POLICIES = _recipe_policies()


def _host_and_device(data, count: int = 64, size: int = 128):
    """`count` crops of the photos augmented by the host chain and by the device from the
    same per-example generators."""
    host_chain = A.augment_from_config(data, mean=MEAN, std=STD)
    draws = A.augment_from_config(dataclasses.replace(data, augment_on="device"), mean=MEAN, std=STD)
    assert isinstance(draws, A.DeviceDraws) and not isinstance(host_chain, A.DeviceDraws)
    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    crop_rng = np.random.default_rng(0)
    images, hosts, examples = [], [], []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(crop_rng.integers(size, min(photo.shape[:2])))
        y = int(crop_rng.integers(photo.shape[0] - side + 1))
        x = int(crop_rng.integers(photo.shape[1] - side + 1))
        image = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        images.append(image)
        host_rng, device_rng = np.random.default_rng([7, i]), np.random.default_rng([7, i])
        hosts.append(host_chain(image, host_rng))
        examples.append(draws(size, size, device_rng))
        # The draws consume the generator exactly as the host augmentation does.
        assert host_rng.integers(1 << 62) == device_rng.integers(1 << 62)
    batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}
    return np.stack(images), np.stack(hosts), np.asarray(_apply(np.stack(images), batch)), batch


@pytest.mark.slow
@pytest.mark.parametrize("recipes,data", RECIPE_POLICIES, ids=[r for r, _ in RECIPE_POLICIES])
def test_whole_policies_with_the_recipes_arguments_equal_the_host(recipes, data):
    images, hosts, device, batch = _host_and_device(data)
    count, worst = _measure(device, hosts)
    assert count == 0, f"{recipes}: {count} of {hosts.size} pixels differ, max {worst}"
    assert (batch["augment_ops"] >= 0).mean() > 0.5  # the ops were drawn and applied
    assert np.mean([not np.array_equal(h, i) for h, i in zip(hosts, images)]) > 0.5


def test_a_policy_with_random_erasing_and_magnitude_noise_equals_the_host():
    data = load_recipe(RECIPE_POLICIES[0][0].split(",")[0]).data
    data = dataclasses.replace(data, augment="randaugment", randaugment_num_layers=3, randaugment_magnitude=9.0,
                             randaugment_magnitude_std=0.5, randaugment_prob_to_apply=0.8,
                             randaugment_exclude_ops=(), random_erasing=0.5)
    images, hosts, device, batch = _host_and_device(data, size=96)
    count, worst = _measure(device, hosts)
    assert count == 0, f"{count} of {hosts.size} pixels differ, max {worst}"
    erased = batch["erase_boxes"][:, 0, 1] > 0
    assert 0.2 < erased.mean() < 0.8
    assert A.OP_CODES["Cutout"] in batch["augment_ops"]


def test_every_augmenting_recipe_builds_either_setting():
    augmenting = [name for name in list_recipes() if load_recipe(name).data.augment != "none"]
    assert augmenting
    for name in augmenting:
        config = load_recipe(name)
        host = apply_overrides(config, ["data.augment_on=host"]).validate()
        device = apply_overrides(config, ["data.augment_on=device"]).validate()
        assert device_augment_from_config(host, mean=MEAN, std=STD) is None
        assert device_augment_from_config(device, mean=MEAN, std=STD) is not None
        assert not isinstance(A.augment_from_config(host.data, mean=MEAN, std=STD), A.DeviceDraws)


def test_erasing_noise_is_unit_normal_and_the_same_on_both_sides():
    quantiles = A.normal_quantiles()
    assert abs(float(quantiles.mean())) < 1e-6 and abs(float(quantiles.std()) - 1.0) < 1e-4
    seed = np.uint32(123456789)
    index = np.arange(3 * 64 * 64, dtype=np.uint32)
    host = A.noise_hash(np.array([seed]), index)
    device = np.asarray(jax.jit(A.noise_hash)(jnp.uint32(seed), jnp.asarray(index)))
    assert np.array_equal(host, device)
    levels = host >> 16
    counts = np.bincount(levels // 4096, minlength=16)  # uniform over the 65536 levels
    assert counts.min() > 0.85 * counts.mean()


def test_on_a_data_parallel_mesh_each_device_augments_its_own_examples():
    # The train step's batch sharding: the compiled augmentation moves no image between devices.
    mesh = parallel.make_mesh()
    assert mesh.devices.size >= 2  # tests/conftest.py gives 4 CPU devices
    sharding = parallel.batch_sharding(mesh)
    count = 2 * mesh.devices.size
    draws = A.augment_from_config(DataConfig(augment="randaugment", random_erasing=0.5, augment_on="device"))
    batch = jax.device_put(draws.draw_batch(count, 24, 24, seed=0), sharding)
    images = jax.device_put(np.zeros((count, 24, 24, 3), np.uint8), sharding)
    apply = jax.jit(_apply, in_shardings=(sharding, sharding), out_shardings=sharding)
    text = apply.lower(images, batch).compile().as_text()
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
        assert collective not in text
