"""Fixtures: small zoo models with randomised weights, built once per session."""

import pytest
from weights_helpers import lite0_same, mnv3_small


@pytest.fixture(scope="session", name="mnv3_small")
def mnv3_small_fixture():
    return mnv3_small()


@pytest.fixture(scope="session", name="lite0_same")
def lite0_same_fixture():
    return lite0_same()
