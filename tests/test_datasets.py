"""Datasets read from disk: torchvision's formats, image folders, splits, errors, and loaders whose
epochs are a pure function of (seed, epoch). Every dataset is a tiny one the test writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compress.datasets import DATASETS, DataOptions, build_dataset, dataset_shape, default_workers
from compress.datasets.loaders import SeededLoader, stratified_split
from compress.errors import CompressError
from tests.tiny_data import write_cifar, write_image_folder, write_mnist

FAMILIES = ("mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet", "imagefolder")


def _build(name: str, root: Path, **options) -> object:
    return build_dataset(name, batch_size=4, seed=0, options=DataOptions(data_dir=str(root), workers=0, **options))


def test_every_family_is_registered_and_listed(cli):
    assert set(FAMILIES) <= set(DATASETS)
    lines = cli("datasets").output.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(DATASETS)


# --- torchvision formats ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_cifar_checksums")
@pytest.mark.parametrize(("name", "hundred"), [("cifar10", False), ("cifar100", True)])
def test_cifar_files_load_with_a_stratified_val_split_and_the_test_split(tmp_path, name, hundred):
    write_cifar(tmp_path, hundred=hundred, per_batch=20, test=12)
    bundle = _build(name, tmp_path, test=True)
    train, val, test = bundle.train.dataset, bundle.val.dataset, bundle.test.dataset
    assert (len(train), len(val), len(test)) == (90, 10, 12)  # 10% of the 100 training images
    assert not set(train.indices) & set(val.indices)
    if not hundred:
        assert sorted(int(train.base.targets[i]) for i in val.indices) == list(range(10))  # one per class
    x, y = next(iter(bundle.train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dataset_shape(name) == (100 if hundred else 10, 3, 32)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_format_files_load(tmp_path, name, folder):
    write_mnist(tmp_path, folder, train=40, test=20)
    bundle = _build(name, tmp_path, val_split=0.25, test=True)
    assert (len(bundle.train.dataset), len(bundle.val.dataset), len(bundle.test.dataset)) == (30, 10, 20)
    x, _ = next(iter(bundle.val))
    assert x.shape == (4, 1, 28, 28)


@pytest.mark.usefixtures("no_cifar_checksums")
def test_val_split_zero_validates_on_the_test_split_and_says_so(tmp_path):
    write_cifar(tmp_path)
    bundle = _build("cifar10", tmp_path, val_split=0.0)
    assert len(bundle.train.dataset) == 50 and len(bundle.val.dataset) == 20
    assert bundle.notes == ["--val-split 0: validating on cifar10's test split (best.pt is then chosen on test data)"]


@pytest.mark.parametrize(
    ("name", "where"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("mnist", "MNIST/raw")]
)
def test_a_missing_dataset_says_where_it_looked_and_how_to_fetch_it(tmp_path, name, where):
    with pytest.raises(CompressError) as err:
        _build(name, tmp_path)
    message = str(err.value)
    assert message.startswith(f"--data-dir: {name} not found: looked for {tmp_path / where}, which is missing")
    assert f"compress train ... --dataset {name} --data-dir {tmp_path} --download" in message


def test_files_that_fail_the_checksums_are_reported_as_such(tmp_path):
    write_cifar(tmp_path)  # not the real CIFAR-10: torchvision's md5 check fails
    with pytest.raises(CompressError, match="holds incomplete files or files that fail torchvision's checksums"):
        _build("cifar10", tmp_path)


def test_a_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as cifar

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar.CIFAR10, "download", offline)
    with pytest.raises(CompressError, match=r"--download: fetching cifar10 into .* failed \(URLError"):
        _build("cifar10", tmp_path, download=True)


def test_datasets_on_disk_need_a_data_dir():
    with pytest.raises(CompressError, match="--data-dir: cifar10 is read from disk; give --data-dir DIR"):
        build_dataset("cifar10", batch_size=4, seed=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"data_dir": "x"},
            "--data-dir: mnist5k is embedded and reads no directory; for all of MNIST use --dataset mnist",
        ),
        ({"val_split": 0.1}, "--val-split: mnist5k has a fixed 4,000 / 1,000 split"),
        ({"test": True}, "--test: mnist5k has no test split"),
        ({"download": True}, "--download: mnist5k is embedded"),
    ],
)
def test_the_embedded_set_refuses_options_it_would_ignore(options, message):
    with pytest.raises(CompressError, match=message):
        build_dataset("mnist5k", batch_size=4, seed=0, options=DataOptions(**options))


def test_input_size_is_only_for_folders():
    with pytest.raises(CompressError, match="--input-size: cifar10 images are 32x32; only imagenet and imagefolder"):
        dataset_shape("cifar10", DataOptions(input_size=64))
    assert dataset_shape("imagenet", DataOptions(input_size=64)) == (1000, 3, 64)
    with pytest.raises(CompressError, match="--input-size: 100000 is more than any image classifier takes"):
        dataset_shape("imagenet", DataOptions(input_size=100_000))


@pytest.mark.usefixtures("no_cifar_checksums")
def test_absurd_worker_counts_are_refused(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(CompressError, match="--workers: 100000 processes is more than a DataLoader should run"):
        build_dataset("cifar10", batch_size=4, seed=0, options=DataOptions(data_dir=str(tmp_path), workers=100_000))


@pytest.mark.usefixtures("no_cifar_checksums")
@pytest.mark.parametrize("split", [1.0, 0.001])
def test_a_val_split_that_leaves_nothing_is_an_error(tmp_path, split):
    write_cifar(tmp_path)
    with pytest.raises(CompressError, match="--val-split"):
        _build("cifar10", tmp_path, val_split=split)


# --- image folders ------------------------------------------------------------------------------


def test_image_folder_classes_come_from_the_folders(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=2, splits=("train", "val", "test"))
    assert dataset_shape("imagefolder", DataOptions(data_dir=str(tmp_path), input_size=16)) == (3, 3, 16)
    bundle = _build("imagefolder", tmp_path, input_size=16, test=True)
    assert [len(loader.dataset) for loader in (bundle.train, bundle.val, bundle.test)] == [6, 6, 6]
    x, _ = next(iter(bundle.train))
    assert x.shape == (4, 3, 16, 16)
    # without val/, 10% of train/ validates; --test then has no split to use
    write_image_folder(tmp_path / "b", classes=2, per_class=5, splits=("train",))
    bundle = _build("imagefolder", tmp_path / "b")
    assert (len(bundle.train.dataset), len(bundle.val.dataset)) == (9, 1)


def test_image_folder_val_labels_follow_train_even_when_val_lacks_a_class(tmp_path):
    write_image_folder(tmp_path, classes=3, per_class=1, splits=("train", "val"))
    for png in (tmp_path / "val" / "class0001").iterdir():
        png.unlink()
    (tmp_path / "val" / "class0001").rmdir()
    val = _build("imagefolder", tmp_path, input_size=8).val.dataset
    assert [val.base.targets[i] for i in val.indices] == [0, 2]


@pytest.mark.parametrize(
    ("layout", "options", "message"),
    [
        (None, {}, r"--data-dir: .*train not found; imagefolder reads DIR/train/<class>/<image>"),
        (("train",), {"test": True, "val_split": 0.0}, "--val-split: imagefolder has no validation or test split"),
        (("train", "val"), {"test": True}, "--test: imagefolder has no test split here; give --val-split 0.1"),
        (("train", "val"), {"download": True}, "--download: imagefolder cannot be downloaded"),
    ],
)
def test_image_folder_mistakes(tmp_path, layout, options, message):
    if layout:
        write_image_folder(tmp_path, classes=2, per_class=2, splits=layout)
    with pytest.raises(CompressError, match=message):
        _build("imagefolder", tmp_path, **options)


def test_image_folder_check_needs_the_data_dir_and_extra_val_classes_are_errors(tmp_path, cli):
    result = cli("check", "--arch", "lenet5", "--dataset", "imagefolder", "--list-params")
    assert result.exit_code == 2
    assert "--data-dir: imagefolder is read from disk; give --data-dir DIR" in result.output
    write_image_folder(tmp_path, classes=2, per_class=1)
    write_image_folder(tmp_path / "other", classes=3, per_class=1, splits=("val",))
    (tmp_path / "other" / "val" / "class0002").rename(tmp_path / "val" / "zebra")
    with pytest.raises(CompressError, match=r"has class folders that .*train lacks: zebra"):
        _build("imagefolder", tmp_path)


def test_imagenet_insists_on_1000_classes(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=1)
    with pytest.raises(CompressError, match="has 2 class folders, imagenet has 1000; .* use --dataset imagefolder"):
        _build("imagenet", tmp_path)


# --- loaders: an epoch is a pure function of (seed, epoch) --------------------------------------


def _epoch(root: Path, workers: int, epoch: int, seed: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    bundle = build_dataset("cifar10", batch_size=8, seed=seed, options=DataOptions(data_dir=str(root), workers=workers))
    bundle.train.set_epoch(epoch)
    return list(bundle.train)


@pytest.mark.usefixtures("no_cifar_checksums")
def test_batches_and_augmentation_do_not_depend_on_workers_or_global_rng(tmp_path):
    write_cifar(tmp_path)
    rng = torch.get_rng_state()
    in_process = _epoch(tmp_path, workers=0, epoch=1)
    assert torch.equal(rng, torch.get_rng_state())  # the model's random stream is left alone
    torch.manual_seed(123)  # another global state changes nothing
    with_workers = _epoch(tmp_path, workers=2, epoch=1)
    assert len(in_process) == len(with_workers) == 6  # 45 images / 8
    for (xa, ya), (xb, yb) in zip(in_process, with_workers, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_epoch = _epoch(tmp_path, workers=0, epoch=2)
    assert not torch.equal(in_process[0][1], other_epoch[0][1])


@pytest.mark.usefixtures("no_cifar_checksums")
def test_each_image_is_augmented_afresh_each_epoch_and_alike_on_a_rerun(tmp_path):
    write_cifar(tmp_path)
    images = _build("cifar10", tmp_path).train.dataset

    def augmented(epoch: int) -> torch.Tensor:
        images.epoch = epoch
        return torch.stack([images[i][0] for i in range(8)])

    first = augmented(1)
    assert not torch.equal(first, augmented(2))
    assert torch.equal(first, augmented(1))


@pytest.mark.usefixtures("no_cifar_checksums")
def test_validation_batches_are_fixed_and_unaugmented(tmp_path):
    write_cifar(tmp_path)
    val = _build("cifar10", tmp_path).val
    assert isinstance(val, SeededLoader) and not val.shuffle
    first = torch.cat([x for x, _ in val])
    val.set_epoch(5)
    assert torch.equal(first, torch.cat([x for x, _ in val]))


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (4, 3), (9, 8), (64, 8)])
def test_default_workers_leaves_a_core_for_training(monkeypatch, cores, workers):
    import compress.datasets.loaders as loaders

    monkeypatch.setattr(loaders.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_workers() == workers


def test_stratified_split_gives_small_datasets_their_share():
    labels = torch.arange(50) % 10
    train, val = stratified_split(labels, 0.1, seed=1)
    assert len(val) == 5 and len(set(labels[val].tolist())) == 5 and len(train) == 45


# --- the CLI, end to end ------------------------------------------------------------------------

QUICK = ("--epochs", "1", "--limit-batches", "2", "--batch-size", "4", "--workers", "0", "--no-plots")


def _train(cli, repo, tmp_path, *args):
    return cli("train", "--schedule", repo / "schedules/lenet5-baseline.yaml", *QUICK,
               "--out-dir", tmp_path / "runs", "--name", "run", *args)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_cli_trains_on_mnist_format_files_and_tests_at_the_end(cli, repo, tmp_path, name, folder):
    write_mnist(tmp_path / "data", folder)
    result = _train(cli, repo, tmp_path, "--dataset", name, "--data-dir", tmp_path / "data", "--test")
    assert result.exit_code == 0, result.output
    assert "test (the last epoch's weights): loss" in result.output
    summary = json.loads((tmp_path / "runs/run/summary.json").read_text())
    assert set(summary["test"]) == {"val_loss", "top1", "top5"}


@pytest.mark.slow
@pytest.mark.usefixtures("no_cifar_checksums")
@pytest.mark.parametrize(("name", "hundred"), [("cifar10", False), ("cifar100", True)])
def test_cli_trains_on_cifar_files_with_worker_processes(cli, repo, tmp_path, name, hundred):
    write_cifar(tmp_path / "data", hundred=hundred)
    result = _train(cli, repo, tmp_path, "--dataset", name, "--data-dir", tmp_path / "data", "--workers", "1")
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "runs/run/checkpoint.pt", weights_only=True)
    assert state["state_dict"]["fc2.weight"].shape == (100 if hundred else 10, 500)
    assert state["config"]["workers"] == 1 and state["config"]["data_dir"] == str(tmp_path / "data")


@pytest.mark.slow
def test_cli_trains_on_an_image_folder_from_a_config_file(cli, repo, tmp_path):
    write_image_folder(tmp_path / "pets", classes=3, per_class=4, splits=("train", "val", "test"))
    config = tmp_path / "pets.yaml"
    config.write_text(f"dataset: imagefolder\ndata_dir: {tmp_path / 'pets'}\ninput_size: 16\ntest: true\n")
    result = _train(cli, repo, tmp_path, "--config", config)
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "runs/run/checkpoint.pt", weights_only=True)
    assert state["state_dict"]["fc2.weight"].shape == (3, 500) and "test (the last epoch's weights)" in result.output


@pytest.mark.slow
def test_cli_trains_on_an_imagenet_layout(cli, repo, tmp_path):
    write_image_folder(tmp_path / "imagenet", classes=1000, per_class=1, size=4)
    result = _train(cli, repo, tmp_path, "--dataset", "imagenet", "--data-dir", tmp_path / "imagenet",
                    "--input-size", "16")  # fmt: skip
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "runs/run/checkpoint.pt", weights_only=True)
    assert state["state_dict"]["fc2.weight"].shape == (1000, 500)


@pytest.mark.slow
def test_cli_missing_dataset_exits_2_before_any_run_directory(cli, repo, tmp_path):
    result = _train(cli, repo, tmp_path, "--dataset", "cifar10", "--data-dir", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert (
        f"error: --data-dir: cifar10 not found: looked for {tmp_path / 'nowhere/cifar-10-batches-py'}" in result.output
    )
    assert not (tmp_path / "runs").exists()
