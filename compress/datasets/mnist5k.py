"""``mnist5k``: 5,000 real MNIST digits shipped inside the package (``data/``, see its README), in
memory as tensors, with a fixed stratified 4,000 / 1,000 split. Nothing is read from disk beyond
the package and nothing is downloaded: the default dataset of every run and test."""

from __future__ import annotations

import gzip
import struct
from importlib import resources

import torch

from compress.datasets.loaders import SPLIT_SEED, TensorLoader, stratified_split
from compress.datasets.registry import DataBundle, DataOptions, register
from compress.errors import CompressError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def read_idx(raw: bytes) -> torch.Tensor:
    """MNIST's IDX format for uint8 data: magic 0x0000 08 NDIM, NDIM big-endian sizes, bytes."""
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(shape)


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 embedded digits as (uint8 N x 28 x 28, int64 N)."""
    folder = resources.files("compress.datasets") / "data"
    images = read_idx(gzip.decompress((folder / "mnist5k-images-idx3-ubyte.gz").read_bytes()))
    labels = read_idx(gzip.decompress((folder / "mnist5k-labels-idx1-ubyte.gz").read_bytes()))
    return images, labels.long()


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
