"""DataConfig's input-pipeline keys: crop flavour ranges, their validation and the defaults."""

import pytest

from flaxnets.config import Config, DataConfig, apply_overrides
from flaxnets.errors import UsageError


@pytest.mark.parametrize("override,message", [
    ("data.crop_area_range=0,1", "crop_area_range=0.0,1.0"),
    ("data.crop_area_range=0.5,0.2", "crop_area_range=0.5,0.2"),
    ("data.crop_area_range=0.1,1.5", "crop_area_range=0.1,1.5"),
    ("data.crop_aspect_range=1.2,0.8", "crop_aspect_range=1.2,0.8"),
])
def test_impossible_crop_ranges_are_usage_errors(override, message):
    with pytest.raises(UsageError, match=message):
        apply_overrides(Config(), [override]).validate()


def test_faithful_defaults():
    data = DataConfig()
    assert data.dct_scaled_decode is False  # the references' pixels unless asked otherwise
    assert data.crop_area_range is None and data.crop_aspect_range is None  # the flavour's
    assert data.interpolation is None and data.inception_fast_mode is True
    config = apply_overrides(Config(), ["data.crop=inception", "data.dct_scaled_decode=true"])
    assert config.validate().data.crop == "inception" and config.data.dct_scaled_decode
