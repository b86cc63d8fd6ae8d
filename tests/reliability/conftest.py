"""Shared fixtures: the digits data set, exported once per session."""

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """train/ and val/ folders of 32x32 digit PNGs (1,437 / 360 images)."""
    from flaxnets.data.digits import export_digits

    out = tmp_path_factory.mktemp("digits")
    export_digits(out)
    return out


@pytest.fixture(scope="session")
def reference(digits_dir, tmp_path_factory):
    """An uninterrupted run of the SMALL settings (13 steps), shared by the resume and fault tests."""
    from reliab_helpers import start_train, wait_ok

    workdir = tmp_path_factory.mktemp("reference") / "run"
    wait_ok(start_train(digits_dir, workdir))
    return workdir
