"""Published training recipes, one module per recipe, each with `get_config() -> Config`.

A recipe module's docstring names its source, the exact command that runs it and the accuracy
that source reports; `PUBLISHED_TOP1` holds that accuracy (None where no source reports one).
`SOURCES` maps dotted config keys (as `--set` spells them) to where each value comes from: a
reference file and line, a paper section, or "seed" / "ours" with the reason. Every value that
matters (`source_keys_required`) must have an entry; docs/RECIPES.md prints them all.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from flaxnets.config import Config, OptimizerConfig, ScheduleConfig, config_keys
from flaxnets.errors import UsageError

#: Sections whose every value differing from `Config()` must have a SOURCES entry.
SOURCED_SECTIONS = ("model", "data", "optimizer", "schedule", "loss", "train", "ema")
#: Keys every recipe sources, whether or not they differ from the default.
CORE_KEYS = (
    "optimizer.name", "schedule.name", "schedule.base_lr", "train.global_batch_size", "train.epochs",
    "loss.label_smoothing", "ema.decay", "data.mean", "data.std", "data.crop", "data.interpolation",
    "data.image_size", "model.bn_momentum", "model.bn_epsilon", "model.bn_group_size", "model.bn_moving_variance",
    "model.dropout_rate", "model.stochastic_depth_rate",
)


def list_recipes() -> list[str]:
    """Names of the bundled recipes, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _module(name: str) -> ModuleType:
    if name not in list_recipes():
        close = difflib.get_close_matches(name, list_recipes(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `flaxnets recipes` lists them"
        raise UsageError(f"unknown recipe {name!r}{hint}")
    return importlib.import_module(f"{__name__}.{name}")


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
    else:
        module = _module(name_or_path)
    config = module.get_config()
    if not isinstance(config, Config):
        raise UsageError(f"recipe {name_or_path!r}: get_config() returned {type(config).__name__}, expected Config")
    return config.validate()


def recipe_info(name: str) -> dict[str, Any]:
    """Summary of a bundled recipe: name, model, epochs, global batch, published top-1, title."""
    module = _module(name)
    config = module.get_config()
    return {
        "name": name,
        "model": config.model.name,
        "epochs": config.train.epochs,
        "batch": config.train.global_batch_size,
        "published_top1": getattr(module, "PUBLISHED_TOP1", None),
        "title": (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "",
    }


def recipe_sources(name: str) -> dict[str, str]:
    """The `SOURCES` of a bundled recipe (empty if it has none)."""
    return dict(getattr(_module(name), "SOURCES", {}))


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
