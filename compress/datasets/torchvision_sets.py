"""torchvision's MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from ``--data-dir``
(``--download`` fetches them). torchvision is imported only when one of them is built: it takes
seconds.

    compress train --schedule s.yaml --dataset cifar10 --data-dir ~/data --download
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress.datasets.loaders import assemble
from compress.datasets.registry import DataBundle, DataOptions, register
from compress.errors import CompressError


def data_root(name: str, options: DataOptions, what: str) -> Path:
    if options.data_dir is None:
        raise CompressError(f"--data-dir: {name} is read from disk; give --data-dir DIR ({what})")
    return Path(options.data_dir).expanduser()


def normalized(mean: tuple[float, ...], std: tuple[float, ...], *first: Any) -> Callable:
    import torchvision.transforms as T

    return T.Compose([*first, T.ToTensor(), T.Normalize(mean, std)])


# --- torchvision's own datasets: MNIST, Fashion-MNIST, CIFAR ---------------------------------------


def _torchvision_split(cls_name: str, name: str, root: Path, *, train: bool, download: bool, folder: str) -> Any:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(root), train=train, download=download)
    except Exception as exc:  # torchvision: RuntimeError when missing; URLError / OSError when a download fails
        where = root / folder
        if download:
            raise CompressError(
                f"--download: fetching {name} into {root} failed ({type(exc).__name__}: {str(exc)[:200]}); "
                f"offline, copy torchvision's {folder} folder there instead"
            ) from None
        if not isinstance(exc, RuntimeError):
            raise
        state = "holds incomplete files or files that fail torchvision's checksums" if where.exists() else "is missing"
        raise CompressError(
            f"--data-dir: {name} not found: looked for {where}, which {state}; "
            f"fetch it with: compress train ... --dataset {name} --data-dir {root} --download"
        ) from None


def _torchvision_bundle(
    cls_name: str, name: str, folder: str, train_tf: Callable, eval_tf: Callable, batch_size: int, seed: int,
    options: DataOptions,
) -> DataBundle:  # fmt: skip
    root = data_root(name, options, f"torchvision's {folder} goes under it; add --download to fetch it")
    train = _torchvision_split(cls_name, name, root, train=True, download=options.download, folder=folder)
    test = _torchvision_split(cls_name, name, root, train=False, download=False, folder=folder)
    return assemble(
        name, train, val_base=None, test_base=test, train_transform=train_tf, eval_transform=eval_tf,
        batch_size=batch_size, seed=seed, options=options,
    )  # fmt: skip


def _register_mnist_like(name: str, cls_name: str, what: str, mean: float, std: float) -> None:
    @register(
        name,
        f"torchvision {what}: 60,000 train / 10,000 test, 1x28x28, 10 classes; --data-dir DIR [--download]",
        num_classes=10,
        in_channels=1,
        input_size=28,
    )
    def build(batch_size: int, seed: int, options: DataOptions) -> DataBundle:
        tf = normalized((mean,), (std,))
        return _torchvision_bundle(cls_name, name, f"{cls_name}/raw", tf, tf, batch_size, seed, options)


def _register_cifar(name: str, cls_name: str, what: str, classes: int, folder: str, mean: tuple, std: tuple) -> None:
    @register(
        name,
        f"torchvision {what}: 50,000 train / 10,000 test, 3x32x32, {classes} classes, "
        "random crop (padding 4) and flip; --data-dir DIR [--download]",
        num_classes=classes,
        in_channels=3,
        input_size=32,
    )
    def build(batch_size: int, seed: int, options: DataOptions) -> DataBundle:
        import torchvision.transforms as T

        train_tf = normalized(mean, std, T.RandomCrop(32, padding=4), T.RandomHorizontalFlip())
        return _torchvision_bundle(cls_name, name, folder, train_tf, normalized(mean, std), batch_size, seed, options)


_register_mnist_like("mnist", "MNIST", "MNIST digits", 0.1307, 0.3081)
_register_mnist_like("fashion_mnist", "FashionMNIST", "Fashion-MNIST clothing", 0.2860, 0.3530)
_register_cifar(
    "cifar10", "CIFAR10", "CIFAR-10", 10, "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
)
_register_cifar(
    "cifar100", "CIFAR100", "CIFAR-100", 100, "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
)
