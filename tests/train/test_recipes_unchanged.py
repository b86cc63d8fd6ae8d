"""Issue 22 merged the eight TF-TPU EfficientNet recipe files into one family file
(flaxnets/recipes/efficientnet_tpu.py). This holds every bundled recipe to what it was before:
the names `flaxnets recipes` lists, each recipe's Config (every key of `to_dict()`), its SOURCES,
its published top-1 and its title, recorded from main before the merge in
goldens/recipes_before_issue22.json.

Keys and recipes added since are not in the record and pass; a recorded value that changed fails
with the recipe and key. A deliberate change to a recipe's value re-records the golden (and says
why in its commit)."""

import json
from pathlib import Path

import pytest

from flaxnets.recipes import list_recipes, load_recipe, recipe, recipe_info

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "recipes_before_issue22.json").read_text())


def _flat(d: dict, prefix: str = "") -> dict:
    """config.to_dict() as dotted keys (an optimizer's or schedule's `args` one key each)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_recorded_recipe_is_still_listed():
    missing = sorted(set(GOLDEN) - set(list_recipes()))
    assert not missing, f"recipes no longer listed: {missing}"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_recipe_config_sources_and_published_figure_are_unchanged(name):
    before, found = GOLDEN[name], recipe(name)
    config = json.loads(json.dumps(_flat(load_recipe(name).to_dict())))
    changed = {k: (v, config.get(k, "<missing>")) for k, v in before["config"].items() if config.get(k, "<missing>") != v}
    assert not changed, f"{name}: values changed (before, now): {changed}"
    sources = dict(found.sources)
    changed = {k: (v, sources.get(k, "<missing>")) for k, v in before["sources"].items() if sources.get(k) != v}
    assert not changed, f"{name}: SOURCES changed (before, now): {changed}"
    assert found.published_top1 == before["published_top1"]
    assert recipe_info(name)["title"] == before["title"]
