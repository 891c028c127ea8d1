"""Datasets read from disk, registered into ``compress.data``'s registry: torchvision's MNIST,
Fashion-MNIST, CIFAR-10 and CIFAR-100 (``--download`` fetches them), ImageNet and any folder of
class subfolders. torchvision is imported only when one of them is built: it takes seconds.

    compress train --schedule s.yaml --dataset cifar10 --data-dir ~/data --download
    compress train --schedule s.yaml --dataset imagefolder --data-dir ~/flowers --arch resnet18
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress import loaders  # a module, not its names: compress.loaders imports compress.data
from compress.data import DataBundle, DataOptions, register
from compress.errors import CompressError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FOLDER_HELP = "DIR/train/<class>/<image>, and optionally DIR/val/<class>/<image> and DIR/test/<class>/<image>"


def _root(name: str, options: DataOptions, what: str) -> Path:
    if options.data_dir is None:
        raise CompressError(f"--data-dir: {name} is read from disk; give --data-dir DIR ({what})")
    return Path(options.data_dir).expanduser()


def _normalize(mean: tuple[float, ...], std: tuple[float, ...], *first: Any) -> Callable:
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
    root = _root(name, options, f"torchvision's {folder} goes under it; add --download to fetch it")
    train = _torchvision_split(cls_name, name, root, train=True, download=options.download, folder=folder)
    test = _torchvision_split(cls_name, name, root, train=False, download=False, folder=folder)
    return loaders.assemble(
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
        tf = _normalize((mean,), (std,))
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

        train_tf = _normalize(mean, std, T.RandomCrop(32, padding=4), T.RandomHorizontalFlip())
        return _torchvision_bundle(cls_name, name, folder, train_tf, _normalize(mean, std), batch_size, seed, options)


_register_mnist_like("mnist", "MNIST", "MNIST digits", 0.1307, 0.3081)
_register_mnist_like("fashion_mnist", "FashionMNIST", "Fashion-MNIST clothing", 0.2860, 0.3530)
_register_cifar(
    "cifar10", "CIFAR10", "CIFAR-10", 10, "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
)
_register_cifar(
    "cifar100", "CIFAR100", "CIFAR-100", 100, "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
)


# --- folders of class subfolders: ImageNet, anything ------------------------------------------------


def folder_classes(train_dir: Path) -> list[str]:
    """The class names as ``ImageFolder`` sees them: the sorted subfolders."""
    return sorted(entry.name for entry in os.scandir(train_dir) if entry.is_dir())


def _train_dir(name: str, options: DataOptions) -> Path:
    root = _root(name, options, f"{name} reads {FOLDER_HELP}")
    if options.download:
        raise CompressError(f"--download: {name} cannot be downloaded; put {FOLDER_HELP} under --data-dir")
    train = root / "train"
    if not train.is_dir():
        raise CompressError(f"--data-dir: {train} not found; {name} reads {FOLDER_HELP}")
    return train


def count_folder_classes(options: DataOptions) -> int:
    train = _train_dir("imagefolder", options)
    classes = folder_classes(train)
    if not classes:
        raise CompressError(f"--data-dir: {train} has no class subfolders; imagefolder reads {FOLDER_HELP}")
    return len(classes)


def _image_folder(path: Path, classes: list[str] | None) -> Any:
    """``ImageFolder(path)``; with ``classes`` (the training folder's), labels follow those, so a
    val/ that lacks a class still labels the others as train/ does."""
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(path))
    except (FileNotFoundError, RuntimeError) as exc:
        raise CompressError(f"--data-dir: {path}: {str(exc).splitlines()[0][:300]}") from None
    if classes is not None:
        extra = sorted(set(folder.classes) - set(classes))
        if extra:
            raise CompressError(
                f"--data-dir: {path} has class folders that {path.parent / 'train'} lacks: {', '.join(extra[:5])}"
            )
        index = {c: i for i, c in enumerate(classes)}
        folder.samples = [(p, index[folder.classes[t]]) for p, t in folder.samples]
        folder.imgs, folder.targets = folder.samples, [t for _, t in folder.samples]
        folder.classes, folder.class_to_idx = list(classes), index
    return folder


def _folder_bundle(name: str, batch_size: int, seed: int, options: DataOptions, size: int, classes: int | None):
    import torchvision.transforms as T

    train_dir = _train_dir(name, options)
    train = _image_folder(train_dir, None)
    if classes is not None and len(train.classes) != classes:
        raise CompressError(
            f"--data-dir: {train_dir} has {len(train.classes)} class folders, {name} has {classes}; "
            "for another class count use --dataset imagefolder"
        )
    held = {
        s: _image_folder(train_dir.parent / s, train.classes)
        for s in ("val", "test")
        if (train_dir.parent / s).is_dir()
    }
    train_tf = _normalize(IMAGENET_MEAN, IMAGENET_STD, T.RandomResizedCrop(size), T.RandomHorizontalFlip())
    eval_tf = _normalize(IMAGENET_MEAN, IMAGENET_STD, T.Resize(round(size * 256 / 224)), T.CenterCrop(size))
    return loaders.assemble(
        name, train, val_base=held.get("val"), test_base=held.get("test"), train_transform=train_tf,
        eval_transform=eval_tf, batch_size=batch_size, seed=seed, options=options,
    )  # fmt: skip


@register(
    "imagenet",
    "ILSVRC-2012 as DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG, 1000 classes, 3x224x224 "
    "(--input-size), random-resized crop and flip",
    num_classes=1000,
    in_channels=3,
    input_size=224,
    resizable=True,
)
def imagenet(batch_size: int, seed: int, options: DataOptions) -> DataBundle:
    return _folder_bundle("imagenet", batch_size, seed, options, options.input_size or 224, 1000)


@register(
    "imagefolder",
    f"your images: {FOLDER_HELP}; classes from the folders, 3x224x224 (--input-size)",
    num_classes=None,
    in_channels=3,
    input_size=224,
    resizable=True,
    count_classes=count_folder_classes,
)
def imagefolder(batch_size: int, seed: int, options: DataOptions) -> DataBundle:
    return _folder_bundle("imagefolder", batch_size, seed, options, options.input_size or 224, None)
