"""Published training recipes: a module per recipe, each with `get_config() -> Config`, or a
module per family whose recipes differ only by the variant (`RECIPES`, a tuple of `Recipe`s).

A recipe module's docstring names its source, the exact command that runs it and the accuracy
that source reports; `PUBLISHED_TOP1` holds that accuracy (None where no source reports one).
A family module (`efficientnet_tpu`: `efficientnet_b0_tpu` ... `efficientnet_b7_tpu`) gives each
of its recipes the same three things, the docstring, `SOURCES` and published figure, in its
`Recipe`; the family module's own name is not a recipe.
`SOURCES` maps dotted config keys (as `--set` spells them) to where each value comes from: a
reference file and line, a paper section, or "seed" / "ours" with the reason. Every value that
matters (`source_keys_required`) must have an entry; docs/RECIPES.md prints them all.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from flaxnets.config import Config, OptimizerConfig, ScheduleConfig, config_keys
from flaxnets.errors import UsageError

#: Sections whose every value differing from `Config()` must have a SOURCES entry.
SOURCED_SECTIONS = ("model", "data", "optimizer", "schedule", "loss", "train", "ema", "progressive")
#: Keys every recipe sources, whether or not they differ from the default.
CORE_KEYS = (
    "optimizer.name", "schedule.name", "schedule.base_lr", "train.global_batch_size", "train.epochs",
    "loss.label_smoothing", "ema.decay", "data.mean", "data.std", "data.crop", "data.interpolation",
    "data.image_size", "model.bn_momentum", "model.bn_epsilon", "model.bn_group_size", "model.bn_moving_variance",
    "model.dropout_rate", "model.stochastic_depth_rate",
)


@dataclass(frozen=True)
class Recipe:
    """One bundled recipe: its name (`--recipe NAME`), docstring (title, source, command), the
    function that builds its Config, `SOURCES` and published top-1. A single-recipe module is read
    into one; a family module lists its own (`RECIPES`)."""

    name: str
    doc: str
    get_config: Callable[[], Config]
    sources: Mapping[str, str] = field(default_factory=dict)
    published_top1: Optional[float] = None


def _recipes_of(module_name: str) -> tuple[Recipe, ...]:
    module = importlib.import_module(f"{__name__}.{module_name}")
    if hasattr(module, "RECIPES"):
        return tuple(module.RECIPES)
    return (Recipe(module_name, module.__doc__ or "", module.get_config, dict(getattr(module, "SOURCES", {})),
                   getattr(module, "PUBLISHED_TOP1", None)),)


@functools.cache
def _index() -> dict[str, Recipe]:
    """Every bundled recipe by name: each module of this package not starting with "_" is one
    recipe, or a family of them. Modules are imported once, on the first look-up."""
    index: dict[str, Recipe] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        for recipe in _recipes_of(info.name):
            if recipe.name in index:
                raise UsageError(f"recipe {recipe.name!r} is defined twice (in flaxnets.recipes.{info.name})")
            index[recipe.name] = recipe
    return index


def list_recipes() -> list[str]:
    """Names of the bundled recipes, sorted."""
    return sorted(_index())


def recipe(name: str) -> Recipe:
    """The bundled recipe `name`; an unknown name is a one-line UsageError with the closest one."""
    index = _index()
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `flaxnets recipes` lists them"
        raise UsageError(f"unknown recipe {name!r}{hint}")
    return index[name]


def load_recipe(name_or_path: str) -> Config:
    """The validated Config of a bundled recipe name, a recipe `.py` file defining `get_config()`,
    or a `config.json` written by `Config.to_json()` (e.g. from a work directory)."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise UsageError(f"recipe file {name_or_path!r} does not exist")
        return Config.from_json(path.read_text()).validate()
    if path.suffix == ".py":
        if not path.is_file():
            raise UsageError(f"recipe file {name_or_path!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"flaxnets_user_recipe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise UsageError(f"recipe file {name_or_path!r} defines no get_config()")
        get_config = module.get_config
    else:
        get_config = recipe(name_or_path).get_config
    config = get_config()
    if not isinstance(config, Config):
        raise UsageError(f"recipe {name_or_path!r}: get_config() returned {type(config).__name__}, expected Config")
    return config.validate()


def recipe_info(name: str) -> dict[str, Any]:
    """Summary of a bundled recipe: name, model, epochs, global batch, published top-1, title."""
    found = recipe(name)
    config = found.get_config()
    return {
        "name": name,
        "model": config.model.name,
        "epochs": config.train.epochs,
        "batch": config.train.global_batch_size,
        "published_top1": found.published_top1,
        "title": found.doc.strip().splitlines()[0] if found.doc.strip() else "",
    }


def recipe_sources(name: str) -> dict[str, str]:
    """The `SOURCES` of a bundled recipe (empty if it has none)."""
    return dict(recipe(name).sources)


def source_keys_required(config: Config) -> list[str]:
    """The keys of `config` whose source a recipe must cite: `CORE_KEYS` plus every key of the
    `SOURCED_SECTIONS` whose value differs from `Config()`'s, in `config_keys()` order (an
    argument of the optimizer or schedule: from that optimizer's or schedule's default)."""
    default = Config(optimizer=OptimizerConfig(name=config.optimizer.name),
                     schedule=ScheduleConfig(name=config.schedule.name))
    required = []
    for key in config_keys(config):
        section, *rest = key.split(".")
        if key in CORE_KEYS or (section in SOURCED_SECTIONS and _value(config, key) != _value(default, key)):
            required.append(key)
    return required


def _value(config: Config, key: str) -> Any:
    obj = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj
