"""Input pipelines: image sources, decoding, transforms, the Grain loader and packed records.

Public API (names are loaded lazily, so `import flaxnets.data` imports neither Grain nor JAX):

* `open_source(path, split)` -> random-access source: `len`, `[i]` -> (encoded bytes, label),
  `num_classes`, `class_names` (`flaxnets.data.sources`).
* `train_loader(path, *, image_size, global_batch_size, seed, process_index=0,
  process_count=1, crop="tf_vision" | "tf_tpu" | "inception", interpolation=None, augment=None,
  workers=0, start_epoch=0, ...)` -> iterator of {"image": uint8 [L, H, W, 3], "label": int32
  [L]} with `steps_per_epoch`, `get_state()`, `set_state()` (`flaxnets.data.loader`).
* `eval_loader(path, *, image_size, crop_fraction, interpolation, global_batch_size,
  process_index=0, process_count=1, workers=0, crop="tf_vision")` -> iterable of batches with a
  "mask", and `num_examples`, `num_batches`, `coverage()`.
* `train_loader_from_config(data, prep, path, *, global_batch_size, seed, ...)` /
  `eval_loader_from_config(data, prep, path, *, global_batch_size, ...)`: the same loaders as a
  `DataConfig` and the run's resolved preprocessing ask (`flaxnets.train.from_config.
  resolve_preprocessing`), each `data.*` key read in one place; training and `flaxnets eval
  --workdir` / `--weights` build their loaders this way.
* `train_transform` / `eval_transform` (`flaxnets.data.transforms`): one image as the `crop`
  flavour's reference pipeline makes it.
* `check_training_layout(data_dir, *, train_source=None, eval_source=None)`: a one-line error
  unless training reads a train/ split of two or more classes and a separate val/ split
  (`flaxnets.data.layout`); `training_paths(data, data_dir)` runs it and returns the training and
  held-out paths (data.train_source / data.eval_source, else `data_dir`), those keys' one reader.
* `normalize(images, mean, std)` -> float32 (jnp, on the device; mean/std on the 0-255 scale).
* `prepare_split` / `RecordSource` (`flaxnets.data.records`), `export_digits`
  (`flaxnets.data.digits`).
"""

_EXPORTS = {
    "open_source": "flaxnets.data.sources",
    "FolderSource": "flaxnets.data.sources",
    "FlatSource": "flaxnets.data.sources",
    "RecordSource": "flaxnets.data.records",
    "prepare_split": "flaxnets.data.records",
    "train_loader": "flaxnets.data.loader",
    "eval_loader": "flaxnets.data.loader",
    "train_loader_from_config": "flaxnets.data.loader",
    "eval_loader_from_config": "flaxnets.data.loader",
    "check_training_layout": "flaxnets.data.layout",
    "training_paths": "flaxnets.data.layout",
    "normalize": "flaxnets.data.transforms",
    "train_transform": "flaxnets.data.transforms",
    "eval_transform": "flaxnets.data.transforms",
    "decode_image": "flaxnets.data.decode",
    "DecodeError": "flaxnets.data.decode",
    "export_digits": "flaxnets.data.digits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flaxnets.data' has no attribute {name!r}")
