"""Batches, as reproducible as the data allows, from tensors in memory (``TensorLoader``) or from
map-style datasets on disk in worker processes (``SeededLoader``):

- the order of an epoch is a permutation drawn from (seed, epoch);
- the augmentation of a sample (random crop, flip) runs under a seed made of (seed, epoch, index),
  so it does not depend on which worker loads the sample, on ``--workers``, or on the training
  process's random state (which stays the model's: dropout, initialisation).

So an epoch is a pure function of (seed, epoch): runs repeat, and a resumed run sees the same batches.
Under torchrun (``shard``), each process yields its own part of every global batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from compress.datasets.registry import DataBundle, DataOptions
from compress.distributed import SINGLE, World
from compress.errors import CompressError

SPLIT_SEED = 20161201  # fixed: the validation split must not move with the run's --seed


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
        """The whole dataset moves to the device once: an epoch never waits on a copy."""
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


def default_workers() -> int:
    """DataLoader worker processes: one per core but one (the training process), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


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


DEFAULT_VAL_SPLIT = 0.1  # Distiller's --valid-size default
MAX_WORKERS = 128


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 2_147_483_647 + index) % (2**63)


class SampleSet(Dataset):
    """Items ``indices`` of ``base`` (which yields ``(image, target)``) through ``transform``.

    With ``augment``, each item's transform runs under its own seed (``sample_seed``) on the CPU
    generator, which is saved and put back around it."""

    def __init__(self, base: Any, indices: Sequence[int], transform: Callable, *, augment: bool, seed: int = 0):
        self.base, self.indices, self.transform = base, list(indices), transform
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = self.indices[i]
        image, target = self.base[index]
        if not self.augment:
            return self.transform(image), int(target)
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(sample_seed(self.seed, self.epoch, index))
        try:
            return self.transform(image), int(target)
        finally:
            generator.set_state(state)


class SeededLoader:
    """A ``DataLoader`` per epoch over a ``SampleSet``, its order drawn from (seed, epoch). Under
    torchrun (``shard``), each process loads its own part of every global batch."""

    def __init__(
        self, dataset: SampleSet, batch_size: int, *, shuffle: bool, seed: int, workers: int, pin_memory: bool
    ):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.workers, self.pin_memory, self.epoch = workers, pin_memory, 0
        self.world = SINGLE

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.epoch = epoch

    def shard(self, world: World) -> None:
        self.world = world

    def to(self, device: torch.device | str) -> SeededLoader:
        """Batches stay on the CPU (pinned with --device cuda); the loop moves each one."""
        return self

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # the generator also gives the workers' base seed, so the global RNG is never drawn from
        generator = torch.Generator().manual_seed((self.seed * 100003 + self.epoch) % 2**63)
        n = len(self.dataset)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        batches = []
        for start in range(0, n, self.batch_size):
            lo, hi = self.world.shard(start, min(start + self.batch_size, n))
            batches.append(order[lo:hi])
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            generator=generator,
        )
        return iter(loader)


def _targets(base: Any) -> torch.Tensor:
    return torch.as_tensor(base.targets, dtype=torch.long)


def _split_indices(base: Any, fraction: float, name: str) -> tuple[list[int], list[int]]:
    if not 0 <= fraction < 1:
        raise CompressError(f"--val-split: must be at least 0 and below 1, got {fraction}")
    train_idx, val_idx = stratified_split(_targets(base), fraction, SPLIT_SEED)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise CompressError(
            f"--val-split: {fraction} of {name}'s {len(base)} training images leaves "
            f"{len(train_idx)} to train on and {len(val_idx)} to validate on; both must be > 0"
        )
    return train_idx.tolist(), val_idx.tolist()


def assemble(
    name: str,
    train_base: Any,
    *,
    val_base: Any | None,
    test_base: Any | None,
    train_transform: Callable,
    eval_transform: Callable,
    batch_size: int,
    seed: int,
    options: DataOptions,
) -> DataBundle:
    """Loaders for train / val / test from the splits a dataset has (``base.targets`` gives labels).

    Validation: a stratified ``val_split`` of the training images when asked for or when the
    dataset has no validation split of its own (default 0.1); with ``val_split 0`` the dataset's
    validation split, or its test split as Distiller did with ``--vs 0``. Test (``--test``): the
    test split, or the validation split when validation was taken from the training images
    (ImageNet's val/ is its de-facto test set)."""
    split = options.val_split if options.val_split is not None else (0.0 if val_base is not None else DEFAULT_VAL_SPLIT)
    notes = []
    if split > 0:
        train_idx, val_idx = _split_indices(train_base, split, name)
        val = (train_base, val_idx)
        test_source = test_base if test_base is not None else val_base
    else:
        train_idx = list(range(len(train_base)))
        held_out = val_base if val_base is not None else test_base
        if held_out is None:
            raise CompressError(f"--val-split: {name} has no validation or test split; give --val-split 0.1")
        if val_base is None:
            notes.append(f"--val-split 0: validating on {name}'s test split (best.pt is then chosen on test data)")
        val = (held_out, range(len(held_out)))
        test_source = test_base
    workers = default_workers() if options.workers is None else options.workers
    if workers > MAX_WORKERS:
        raise CompressError(
            f"--workers: {workers} processes is more than a DataLoader should run (at most {MAX_WORKERS})"
        )

    def loader(base: Any, indices: Sequence[int], *, train: bool) -> SeededLoader:
        transform = train_transform if train else eval_transform
        dataset = SampleSet(base, indices, transform, augment=train, seed=seed)
        return SeededLoader(
            dataset, batch_size, shuffle=train, seed=seed, workers=workers, pin_memory=options.pin_memory
        )

    test = None
    if options.test:
        if test_source is None:
            raise CompressError(
                f"--test: {name} has no test split here; give --val-split 0.1 to validate on part of the "
                "training images and test on the validation split"
            )
        test = loader(test_source, range(len(test_source)), train=False)
    return DataBundle(
        train=loader(train_base, train_idx, train=True), val=loader(*val, train=False), test=test, notes=notes
    )
