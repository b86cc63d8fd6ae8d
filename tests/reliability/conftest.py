"""Shared fixtures: the digits data set and one uninterrupted reference run, made once per test
session and shared by every pytest-xdist worker (each costs a `flaxnets train` subprocess)."""

import pytest
from filelock import FileLock


def _shared_root(tmp_path_factory, worker_id):
    """A directory all workers of this session see (the session's own temp dir without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory, worker_id):
    """train/ and val/ folders of 32x32 digit PNGs (1,437 / 360 images)."""
    from flaxnets.data.digits import export_digits

    root = _shared_root(tmp_path_factory, worker_id)
    out = root / "reliability-digits"
    with FileLock(str(root / "reliability-digits.lock")):
        if not (out / "DONE").exists():
            export_digits(out)
            (out / "DONE").write_text("")
    return out


@pytest.fixture(scope="session")
def reference(digits_dir, tmp_path_factory, worker_id):
    """An uninterrupted run of the SMALL settings (13 steps), shared by the resume, multi-process
    and fault tests; it must not be modified (copy it first)."""
    from reliab_helpers import start_train, wait_ok

    root = _shared_root(tmp_path_factory, worker_id)
    workdir = root / "reliability-reference" / "run"
    with FileLock(str(root / "reliability-reference.lock")):
        if not (workdir.parent / "DONE").exists():
            wait_ok(start_train(digits_dir, workdir))
            (workdir.parent / "DONE").write_text("")
    return workdir
