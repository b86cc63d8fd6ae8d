"""A run with `data.augment_on=device` (RandAugment(2, 15) and RandomErasing drawn on the host,
applied in the train step) on two CPU devices, SIGKILLed and resumed with the same command, ends
with exactly the weights, EMA weights, optimizer state and losses of an uninterrupted run with
`data.augment_on=host`: the device path resumes like the host path (test_resume.py) and trains
on the very images the host path makes (measured on the CPU backend: every loss and weight
bit-equal)."""

import pytest

from reliab_helpers import kill_when, start_train, wait_ok
from test_resume import _assert_same_run, _committed_steps

pytestmark = pytest.mark.slow

AUGMENT = ["data.augment=randaugment", "data.randaugment_magnitude=15", "data.random_erasing=0.5"]


def test_device_augmentation_resumes_exactly_after_sigkill_as_the_host_path_runs(digits_dir, tmp_path):
    host = tmp_path / "host"
    out = wait_ok(start_train(digits_dir, host, *AUGMENT, "data.augment_on=host"))
    assert "on the host" in out and "2 cpu devices" in out

    workdir = tmp_path / "device"
    proc = start_train(digits_dir, workdir, *AUGMENT, "data.augment_on=device")
    # During step 6's evaluation, before its checkpoint (as test_resume.py's first kill).
    kill_when(proc, lambda: "step 6: evaluating" in proc.log(), poll=0.005)
    assert 6 not in _committed_steps(workdir), "kill came too late"
    out = wait_ok(start_train(digits_dir, workdir, *AUGMENT, "data.augment_on=device"))
    assert "on the device" in out and "resuming from the checkpoint" in out
    _assert_same_run(workdir, host)
