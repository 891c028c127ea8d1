"""The embedded dataset: real digits, a stratified deterministic split, batches in memory."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.datasets import DATASETS, build_dataset
from compress.datasets.loaders import TensorLoader, stratified_split
from compress.datasets.mnist5k import load_mnist5k, read_idx


def test_mnist5k_is_5000_digits_500_per_class():
    images, labels = load_mnist5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [500] * 10
    assert images.max() > 200 and images.min() == 0  # real pixels, not a placeholder


DATA = Path(__file__).resolve().parent.parent / "compress" / "datasets" / "data"


def test_embedded_files_are_the_ones_their_readme_records():
    """The digests in compress/datasets/data/README.md, of the files as the package ships them."""
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for name in ("mnist5k-images-idx3-ubyte.gz", "mnist5k-labels-idx1-ubyte.gz"):
        digest = hashlib.sha256(gzip.decompress((DATA / name).read_bytes())).hexdigest()
        assert f"`{name}`" in readme and f"`{digest}`" in readme, name


def test_the_build_tool_rebuilds_the_embedded_files_byte_for_byte(tmp_path):
    """tools/build_mnist5k.py, fed the CSV those files hold (written here from them), gives them back."""
    images, labels = load_mnist5k()
    pairs = zip(images, labels, strict=True)
    rows = [",".join(map(str, [*image.flatten().tolist(), int(label)])) for image, label in pairs]
    csv = tmp_path / "mnist_5k.csv.gz"
    csv.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    tool = Path(__file__).resolve().parent.parent / "tools" / "build_mnist5k.py"
    done = subprocess.run([sys.executable, str(tool), str(csv), "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("mnist5k-images-idx3-ubyte.gz", "mnist5k-labels-idx1-ubyte.gz"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_read_idx_rejects_other_files():
    with pytest.raises(ValueError):
        read_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8)


def test_split_is_stratified_disjoint_and_deterministic():
    labels = torch.arange(10).repeat_interleave(500)
    train, val = stratified_split(labels, 0.2, seed=7)
    assert len(train) == 4000 and len(val) == 1000
    assert torch.bincount(labels[val]).tolist() == [100] * 10
    assert torch.bincount(labels[train]).tolist() == [400] * 10
    assert not set(train.tolist()) & set(val.tolist())
    train2, val2 = stratified_split(labels, 0.2, seed=7)
    assert torch.equal(val, val2) and torch.equal(train, train2)
    _, val3 = stratified_split(labels, 0.2, seed=8)
    assert not torch.equal(val, val3)


def test_mnist5k_bundle_is_normalised_and_split_4000_1000():
    bundle = build_dataset("mnist5k", batch_size=64, seed=0)
    assert bundle.train.x.shape == (4000, 1, 28, 28) and bundle.val.x.shape == (1000, 1, 28, 28)
    assert abs(bundle.train.x.mean().item()) < 0.05 and abs(bundle.train.x.std().item() - 1) < 0.05
    assert DATASETS.get("mnist5k").num_classes == 10
    # the validation split does not move with the run's seed
    other = build_dataset("mnist5k", batch_size=64, seed=5)
    assert torch.equal(bundle.val.y, other.val.y) and torch.equal(bundle.val.x, other.val.x)


def test_loader_order_depends_on_seed_and_epoch_only():
    x, y = torch.arange(100).float().unsqueeze(1), torch.arange(100)
    loader = TensorLoader(x, y, 32, shuffle=True, seed=3)
    loader.set_epoch(2)
    first = torch.cat([b for _, b in loader])
    again = TensorLoader(x, y, 32, shuffle=True, seed=3)
    again.set_epoch(2)
    assert torch.equal(first, torch.cat([b for _, b in again]))
    assert sorted(first.tolist()) == list(range(100))
    loader.set_epoch(3)
    assert not torch.equal(first, torch.cat([b for _, b in loader]))
    assert len(loader) == 4 and [len(b) for _, b in loader] == [32, 32, 32, 4]


def test_unknown_dataset_is_a_clear_error():
    from compress.errors import CompressError

    with pytest.raises(CompressError, match=r"--dataset: unknown dataset 'mnist5' \(did you mean 'mnist5k'\?\)"):
        build_dataset("mnist5", batch_size=1, seed=0)
