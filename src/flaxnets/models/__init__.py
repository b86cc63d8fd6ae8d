"""The model zoo: `create_model`, `get_spec`, `list_models`, `param_kinds`, counting.

Importing this package imports every family module, each of which registers its models
(`registry.register_family` / `register_models`); the order here is the zoo's order.
"""

from flaxnets.models import (  # noqa: F401
    mobilenet_v3, mobilenet_v2, efficientnet, mobilenet_v4, efficientnetv2,
)
from flaxnets.models.counting import (
    count_macs, count_params, layer_summary, param_kinds, traced_summary,
)
from flaxnets.models.registry import ModelSpec, create_model, get_spec, list_models

__all__ = [
    "ModelSpec", "count_macs", "count_params", "create_model", "get_spec", "layer_summary",
    "list_models", "param_kinds", "traced_summary",
]
