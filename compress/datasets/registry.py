"""The dataset registry (a leaf: the dataset modules import it, ``compress.datasets`` imports them).

An entry declares what a model needs to know about its images (classes, channels, side), so that
``compress check`` builds the model without loading any data, and a builder ``(batch_size, seed,
options) -> DataBundle`` that loads it. To add a dataset: one ``@register`` over such a builder in a
module of this package, and that module imported in ``compress/datasets/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from compress.errors import CompressError
from compress.registry import Registry

MAX_INPUT_SIZE = 4096


class Loader(Protocol):
    """What the training loop takes: batches ``(x, y)``, a length, ``set_epoch`` (an epoch's order is
    a pure function of (seed, epoch), so runs repeat and resume exactly), and what a run sets once
    before training: ``shard`` (this process's part of every batch under torchrun) and ``to`` (the
    device the batches arrive on)."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def shard(self, world: Any) -> None: ...
    def to(self, device: Any) -> Loader: ...


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
    train: Loader
    val: Loader
    test: Loader | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know, e.g. "validating on test"

    def loaders(self) -> list[Loader]:
        return [loader for loader in (self.train, self.val, self.test) if loader is not None]


class DatasetShape(NamedTuple):
    num_classes: int
    in_channels: int
    input_size: int


@dataclass(frozen=True)
class DatasetEntry:
    """``num_classes`` is ``None`` where it depends on the data (an image folder): then
    ``count_classes(options)`` reads it from the directory listing."""

    name: str
    build: Callable[..., DataBundle]
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


DATASETS: Registry[DatasetEntry] = Registry("dataset", "--dataset")


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
        entry = DatasetEntry(name, build, num_classes, in_channels, input_size, resizable, count_classes)
        DATASETS.register(name, entry, description)
        return build

    return wrap
