"""Every recipe value that matters names its source (SOURCES), every source names a real key, and
docs/RECIPES.md is the page `flaxnets recipes --sources` generates from them."""

import dataclasses
from pathlib import Path

import pytest

from flaxnets.config import Config, OptimizerConfig, config_keys
from flaxnets.recipes import CORE_KEYS, list_recipes, load_recipe, recipe_sources, source_keys_required

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list_recipes())
def test_every_value_that_matters_has_a_source_and_every_source_a_key(name):
    sources = recipe_sources(name)
    missing = [k for k in source_keys_required(load_recipe(name)) if k not in sources]
    assert not missing, f"{name}: no SOURCES entry for {missing}"
    unknown = sorted(set(sources) - set(config_keys(load_recipe(name))))
    assert not unknown, f"{name}: SOURCES names keys that do not exist: {unknown}"
    assert all(isinstance(v, str) and v.strip() for v in sources.values()), name


def test_the_required_keys_are_the_core_list_plus_every_changed_value():
    base = source_keys_required(Config())
    assert base == [k for k in config_keys() if k in CORE_KEYS]
    changed = dataclasses.replace(Config(), optimizer=dataclasses.replace(Config().optimizer, eps=0.5),
                                  checkpoint=dataclasses.replace(Config().checkpoint, keep=7))
    required = source_keys_required(changed)
    # A changed optimizer value needs a source; a changed checkpoint setting is not a recipe value.
    assert "optimizer.eps" in required and "checkpoint.keep" not in required
    # An argument of another optimizer is sourced where it differs from that optimizer's default.
    rmsprop = dataclasses.replace(Config(), optimizer=OptimizerConfig(name="rmsprop", momentum=0.9))
    assert {k for k in source_keys_required(rmsprop) if k.startswith("optimizer.")} == {"optimizer.name",
                                                                                       "optimizer.momentum"}
    assert set(CORE_KEYS) <= set(config_keys())


def test_docs_recipes_page_is_current():
    from flaxnets.commands.recipes import sources_markdown

    page = ROOT / "docs" / "RECIPES.md"
    assert page.read_text() == sources_markdown(), \
        "docs/RECIPES.md is stale: flaxnets recipes --sources > docs/RECIPES.md"


def test_the_page_shows_each_recipes_values_with_their_sources(capsys):
    from flaxnets.cli import main

    assert main(["recipes", "--sources", "--show", "mobilenet_v3_large_tfvision"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### `mobilenet_v3_large_tfvision`\n")
    sources = recipe_sources("mobilenet_v3_large_tfvision")
    assert f"| `schedule.warmup_epochs` | `5` | {sources['schedule.warmup_epochs']} |" in out
    assert main(["recipes", "--sources", "--keys"]) == 2
    assert "--sources and --keys" in capsys.readouterr().err
    assert main(["recipes", "--sources", "--show", "mobilenet_v3_large_tfvison"]) == 2
