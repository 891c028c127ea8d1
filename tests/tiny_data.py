"""Tiny datasets written on disk by the tests, in the formats torchvision and ImageFolder read:
no download, ever. Labels cycle over the classes, so every class is present and splits stratify."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest


def _labels(n: int, classes: int) -> list[int]:
    return [i % classes for i in range(n)]


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_cifar(root: Path, *, hundred: bool = False, per_batch: int = 10, test: int = 20) -> Path:
    """CIFAR-10's five ``data_batch_N`` + ``test_batch`` + ``batches.meta`` pickles (or CIFAR-100's
    ``train`` / ``test`` / ``meta``) under ``root``, as torchvision's CIFAR classes read them."""
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def dump(name: str, n: int, seed: int) -> None:
        entry = {"data": _images(n, (3 * 32 * 32,), seed), key: _labels(n, classes)}
        (folder / name).write_bytes(pickle.dumps(entry))

    if hundred:
        dump("train", per_batch * 5, 0)
        dump("test", test, 1)
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(classes)]}))
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", per_batch, i)
        dump("test_batch", test, 0)
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(classes)]}))
    return root


def _idx(data: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, data.ndim) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()


def write_mnist(root: Path, folder: str = "MNIST", *, train: int = 40, test: int = 20) -> Path:
    """The four uncompressed IDX files torchvision's MNIST / FashionMNIST read from ``root/folder/raw``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", train, 0), ("t10k", test, 1)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(_images(n, (28, 28), seed)))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(np.array(_labels(n, 10), dtype=np.uint8)))
    return root


def write_image_folder(
    root: Path, classes: int = 3, per_class: int = 4, *, splits: tuple[str, ...] = ("train", "val"), size: int = 8
) -> Path:
    """``root/<split>/<class>/<i>.png``: small random RGB PNGs, encoded once per split and index."""
    import io

    from PIL import Image

    for s, split in enumerate(splits):
        pngs = []
        for i in range(per_class):
            buffer = io.BytesIO()
            Image.fromarray(_images(1, (size, size, 3), seed=s * 7 + i)[0]).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        for c in range(classes):
            folder = root / split / f"class{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, png in enumerate(pngs):
                (folder / f"{i}.png").write_bytes(png)
    return root


@pytest.fixture
def no_cifar_checksums(monkeypatch):
    """Our CIFAR files are not the real ones: skip torchvision's md5 checks (only in tests)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
