"""Registry of datasets. The embedded ``mnist5k`` lives in memory as tensors: an epoch never waits on data.

To add a dataset: one ``@register`` builder returning a ``DataBundle``.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import torch

from compress.errors import CompressError, one_of, suggest

SPLIT_SEED = 20161201  # fixed: the validation split must not move with the run's --seed
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class TensorLoader:
    """Batches from in-memory tensors; the shuffle order is a pure function of (seed, epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int = 0):
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def to(self, device: torch.device | str) -> TensorLoader:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(n, generator=generator).to(self.x.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
        else:
            for start in range(0, n, self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]


@dataclass
class DataBundle:
    train: TensorLoader
    val: TensorLoader


@dataclass(frozen=True)
class DatasetEntry:
    """What a model needs to know about a dataset is declared here, so building a model for
    ``compress check`` never loads the data."""

    name: str
    build: Callable[..., DataBundle]
    description: str
    num_classes: int
    in_channels: int
    input_size: int


DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, description: str, *, num_classes: int, in_channels: int, input_size: int) -> Callable:
    def wrap(build: Callable[..., DataBundle]) -> Callable[..., DataBundle]:
        DATASETS[name] = DatasetEntry(name, build, description, num_classes, in_channels, input_size)
        return build

    return wrap


def dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise CompressError(f"--dataset: unknown dataset {name!r}{suggest(name, DATASETS)}; {one_of(DATASETS)}")
    return DATASETS[name]


def build_dataset(name: str, *, batch_size: int, seed: int, device: str = "cpu") -> DataBundle:
    bundle = dataset_entry(name).build(batch_size=batch_size, seed=seed)
    bundle.train.to(device)
    bundle.val.to(device)
    return bundle


def read_idx(raw: bytes) -> torch.Tensor:
    """MNIST's IDX format for uint8 data: magic 0x0000 08 NDIM, NDIM big-endian sizes, bytes."""
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(shape)


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 embedded digits as (uint8 N x 28 x 28, int64 N)."""
    folder = resources.files("compress") / "data"
    images = read_idx(gzip.decompress((folder / "mnist5k-images-idx3-ubyte.gz").read_bytes()))
    labels = read_idx(gzip.decompress((folder / "mnist5k-labels-idx1-ubyte.gz").read_bytes()))
    return images, labels.long()


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with the same class proportions in both, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(len(idx) * val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


@register(
    "mnist5k",
    "embedded: 5,000 MNIST digits, 4,000 train / 1,000 val, no download",
    num_classes=10,
    in_channels=1,
    input_size=28,
)
def mnist5k(batch_size: int, seed: int) -> DataBundle:
    images, labels = load_mnist5k()
    x = ((images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
    train_idx, val_idx = stratified_split(labels, 0.2, SPLIT_SEED)
    return DataBundle(
        train=TensorLoader(x[train_idx], labels[train_idx], batch_size, shuffle=True, seed=seed),
        val=TensorLoader(x[val_idx], labels[val_idx], max(batch_size, 500), shuffle=False),
    )
