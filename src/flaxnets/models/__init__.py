"""The model zoo: `create_model`, `get_spec`, `list_models`, `param_kinds`, counting."""

from flaxnets.models.counting import (
    count_macs, count_params, layer_summary, param_kinds, traced_summary,
)
from flaxnets.models.registry import ModelSpec, create_model, get_spec, list_models

__all__ = [
    "ModelSpec", "count_macs", "count_params", "create_model", "get_spec", "layer_summary",
    "list_models", "param_kinds", "traced_summary",
]
