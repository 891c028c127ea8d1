"""Registry of datasets. The embedded ``mnist5k`` lives in memory as tensors: an epoch never waits on data.
Datasets read from disk (torchvision's, ImageNet, any image folder) are registered by
``compress.datasets_torchvision`` into the same registry and load through ``compress.loaders``.

To add a dataset: one ``@register`` builder ``(batch_size, seed, options) -> DataBundle``.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import NamedTuple, Protocol

import torch

from compress.distributed import SINGLE, World
from compress.errors import CompressError, one_of, suggest

SPLIT_SEED = 20161201  # fixed: the validation split must not move with the run's --seed
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MAX_INPUT_SIZE = 4096


class TensorLoader:
    """Batches from in-memory tensors; the shuffle order is a pure function of (seed, epoch).
    Under torchrun (``shard``), each process yields its own part of every global batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int = 0):
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.epoch = 0
        self.world = SINGLE

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, world: World) -> None:
        self.world = world

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
                lo, hi = self.world.shard(start, min(start + self.batch_size, n))
                idx = order[lo:hi]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
        else:
            for start in range(0, n, self.batch_size):
                lo, hi = self.world.shard(start, min(start + self.batch_size, n))
                yield self.x[lo:hi], self.y[lo:hi]


class Loader(Protocol):
    """What the training loop takes: batches ``(x, y)``, a length, and ``set_epoch`` (the order of an
    epoch is a pure function of (seed, epoch), so runs repeat and resume exactly)."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


@dataclass(frozen=True)
class DataOptions:
    """Settings for datasets read from disk; the embedded ``mnist5k`` takes none of them."""

    data_dir: str | None = None
    download: bool = False
    val_split: float | None = None  # None: the dataset's own validation split, else 10% of train
    workers: int | None = None  # None: default_workers()
    input_size: int | None = None  # imagenet / imagefolder only
    pin_memory: bool = False
    test: bool = False  # build the test split's loader too


@dataclass
class DataBundle:
    train: Loader  # TensorLoader or compress.loaders.SeededLoader
    val: Loader
    test: Loader | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know, e.g. "validating on test"


class DatasetShape(NamedTuple):
    num_classes: int
    in_channels: int
    input_size: int


@dataclass(frozen=True)
class DatasetEntry:
    """What a model needs to know about a dataset is declared here, so building a model for
    ``compress check`` never loads the data. ``num_classes`` is ``None`` where it depends on the
    data (an image folder): then ``count_classes(options)`` reads it from the directory listing."""

    name: str
    build: Callable[..., DataBundle]
    description: str
    num_classes: int | None
    in_channels: int
    input_size: int
    resizable: bool = False  # takes --input-size
    count_classes: Callable[[DataOptions], int] | None = None

    def shape(self, options: DataOptions | None = None) -> DatasetShape:
        options = options or DataOptions()
        size = self.input_size
        if options.input_size is not None and options.input_size != self.input_size:
            if not self.resizable:
                raise CompressError(
                    f"--input-size: {self.name} images are {self.input_size}x{self.input_size}; "
                    "only imagenet and imagefolder take an input size"
                )
            size = options.input_size
        if size > MAX_INPUT_SIZE:
            raise CompressError(
                f"--input-size: {size} is more than any image classifier takes (at most {MAX_INPUT_SIZE})"
            )
        classes = self.num_classes if self.count_classes is None else self.count_classes(options)
        assert classes is not None, f"dataset {self.name} declares no class count"
        return DatasetShape(classes, self.in_channels, size)


DATASETS: dict[str, DatasetEntry] = {}


def register(
    name: str,
    description: str,
    *,
    num_classes: int | None,
    in_channels: int,
    input_size: int,
    resizable: bool = False,
    count_classes: Callable[[DataOptions], int] | None = None,
) -> Callable:
    def wrap(build: Callable[..., DataBundle]) -> Callable[..., DataBundle]:
        DATASETS[name] = DatasetEntry(
            name, build, description, num_classes, in_channels, input_size, resizable, count_classes
        )
        return build

    return wrap


def dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise CompressError(f"--dataset: unknown dataset {name!r}{suggest(name, DATASETS)}; {one_of(DATASETS)}")
    return DATASETS[name]


def dataset_shape(name: str, options: DataOptions | None = None) -> DatasetShape:
    """Classes, channels and side of the images a model for ``name`` takes, without loading the data."""
    return dataset_entry(name).shape(options)


def default_workers() -> int:
    """DataLoader worker processes: one per core but one (the training process), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


def build_dataset(
    name: str, *, batch_size: int, seed: int, device: str = "cpu", options: DataOptions | None = None
) -> DataBundle:
    options = options or DataOptions()
    bundle = dataset_entry(name).build(batch_size=batch_size, seed=seed, options=options)
    for loader in (bundle.train, bundle.val, bundle.test):
        if isinstance(loader, TensorLoader):
            loader.to(device)
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
    """Indices (train, val) with the same class proportions in both, reproducible from ``seed``.

    ``round(N * val_fraction)`` go to val, shared among the classes by largest remainder, so a
    small dataset still gets its share (5 of 50 images in 10 classes: one each from 5 classes)."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels).tolist()
    members = [torch.nonzero(labels == cls).flatten() for cls in classes]
    quotas = [len(idx) * val_fraction for idx in members]
    counts = [int(q) for q in quotas]
    spare = round(len(labels) * val_fraction) - sum(counts)
    by_remainder = sorted(range(len(classes)), key=lambda i: counts[i] - quotas[i])  # stable: ties by class
    for i in by_remainder[: max(spare, 0)]:
        counts[i] += 1
    train, val = [], []
    for idx, n_val in zip(members, counts, strict=True):
        idx = idx[torch.randperm(len(idx), generator=generator)]
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
def mnist5k(batch_size: int, seed: int, options: DataOptions | None = None) -> DataBundle:
    _refuse_options("mnist5k", options or DataOptions())
    images, labels = load_mnist5k()
    x = ((images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
    train_idx, val_idx = stratified_split(labels, 0.2, SPLIT_SEED)
    return DataBundle(
        train=TensorLoader(x[train_idx], labels[train_idx], batch_size, shuffle=True, seed=seed),
        val=TensorLoader(x[val_idx], labels[val_idx], max(batch_size, 500), shuffle=False),
    )


def _refuse_options(name: str, options: DataOptions) -> None:
    """The embedded set reads no directory and has one fixed split: say so rather than ignore a flag."""
    if options.data_dir is not None:
        raise CompressError(
            f"--data-dir: {name} is embedded and reads no directory; for all of MNIST use --dataset mnist"
        )
    if options.download:
        raise CompressError(f"--download: {name} is embedded; nothing to download")
    if options.val_split is not None:
        raise CompressError(f"--val-split: {name} has a fixed 4,000 / 1,000 split")
    if options.test:
        raise CompressError(f"--test: {name} has no test split; for MNIST's 10,000 test digits use --dataset mnist")


from compress import datasets_torchvision  # noqa: E402,F401  (registers mnist, cifar10, imagefolder, ...)
