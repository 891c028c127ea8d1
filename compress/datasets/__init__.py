"""Datasets: the embedded ``mnist5k``, torchvision's MNIST / Fashion-MNIST / CIFAR, ImageNet and any
folder of class subfolders, in the ``DATASETS`` registry (``registry.py``, a leaf), with the loaders
that batch them (``loaders.py``). Imports go one way: registry <- loaders <- the dataset modules
<- this package.

    bundle = build_dataset("mnist5k", batch_size=64, seed=0, device=device, world=world)
    for x, y in bundle.train: ...          # already on the device, already this process's share
"""

from __future__ import annotations

from typing import Any

from compress.datasets import folders, mnist5k, torchvision_sets  # noqa: F401  (register their datasets)
from compress.datasets.loaders import default_workers
from compress.datasets.registry import DATASETS, DataBundle, DataOptions, DatasetEntry, DatasetShape, Loader
from compress.distributed import SINGLE, World

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataOptions",
    "DatasetEntry",
    "DatasetShape",
    "Loader",
    "build_dataset",
    "dataset_shape",
    "default_workers",
]


def dataset_shape(name: str, options: DataOptions | None = None) -> DatasetShape:
    """Classes, channels and side of the images a model for ``name`` takes, without loading the data."""
    return DATASETS.get(name).shape(options)


def build_dataset(name: str, *, batch_size: int, seed: int, device: Any = "cpu", world: World = SINGLE,
                  options: DataOptions | None = None) -> DataBundle:  # fmt: skip
    """The dataset's loaders, ready for this process: on ``device`` and sharded for ``world``."""
    options = options or DataOptions()
    bundle = DATASETS.get(name).build(batch_size=batch_size, seed=seed, options=options)
    for loader in bundle.loaders():
        loader.shard(world)
        loader.to(device)
    return bundle
