"""flaxnets: ImageNet classifiers in JAX / Flax NNX / Optax, with the published recipes as files."""

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "get_spec", "load_weights", "__version__"]


def __getattr__(name):
    # Lazy so that `import flaxnets` (and `flaxnets --help`) does not import JAX.
    if name in ("create_model", "list_models", "get_spec"):
        from flaxnets import models

        return getattr(models, name)
    if name == "load_weights":
        from flaxnets.weights import load_weights

        return load_weights
    raise AttributeError(f"module 'flaxnets' has no attribute {name!r}")
