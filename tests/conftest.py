"""Test-wide setup: four fake CPU devices so sharding tests run on any machine."""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Convolutions as lax convolutions (also in the CLI subprocesses, which inherit this). On the
# CPU, flaxnets' default unrolls depthwise and pointwise convolutions: several times faster
# steps but longer XLA compiles, and the suite's runs are a few steps each, so compiles
# dominate. The unrolled forms are tested where it matters: tests/models/test_conv_impl.py
# (values and gradients against lax) and the Keras parity tests (whole models, 1e-4).
os.environ.setdefault("FLAXNETS_CONV_IMPL", "lax")

# One persistent XLA compilation cache for the whole session: the pytest-xdist workers and every
# CLI subprocess they start inherit this environment, and many tests compile the same programs
# (digits_demo's train and eval steps at the same shapes, in-process and in `flaxnets train`
# subprocesses). A fresh directory per session (made by the controlling process, before the
# workers start, and removed at its end), so no test depends on what an earlier session left;
# a cached executable is the one a compile would have produced (the key is the program, the
# flags and the jax/XLA versions), so bit-exact tests are unaffected. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep one across sessions. Measured 2026-12-04 (idle
# 2-core VM): a reliability test's `flaxnets train` subprocess (reliab_helpers.SMALL, 2 devices)
# took 26 s without the cache, 26 s filling it and 13 s once the same run had filled it.
_OWN_CACHE = None
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="flaxnets-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

#: The longest test files, longest first. pytest-xdist (`--dist loadfile`) hands files to the
#: workers in collection order, so starting these first keeps both CI cores busy to the end
#: instead of leaving one subprocess-heavy file running alone after everything else.
LONGEST_FIRST = (
    "reliability/test_multiprocess.py",  # makes the shared reference run ...
    "test_workdir_inference.py",  # ... while the other worker does this
    "train/test_reference_trajectory.py",  # a compiled train step per reference golden (~400 s CPU)
    "export/test_tflite.py",  # trains a 10-epoch digits run, converts and calibrates models
    "export/test_recipe_export.py",  # trains a published recipe 440 steps, compiles two recipes' bfloat16 steps, exports each three ways
    "train/test_reference_trajectory_past_warmup.py",  # three compiled recipe steps, 20 steps each at batch 128-256
    "test_quant.py",  # a QAT MobileNet v3 run and its int8 export
    "train/test_progressive.py",  # a 3-stage digits run and its kill -9 resume (~90 s)
    "reliability/test_resume.py",
    "reliability/test_faults.py",
    "weights/test_keras_parity.py",
    "train/test_recipes.py",
)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.as_posix()
        for i, name in enumerate(LONGEST_FIRST):
            if path.endswith("/tests/" + name):
                return i
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The digits data set as 32x32 PNG class folders (1,437 train / 360 val), exported once per
    session; tests read it and never modify it."""
    from flaxnets.data.digits import export_digits

    root = tmp_path_factory.mktemp("digits")
    counts = export_digits(root, size=32)
    assert counts["val"] == 360
    return root
