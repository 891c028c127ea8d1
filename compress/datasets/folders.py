"""Folders of class subfolders: ImageNet's layout, or any images of your own. Each image is read
and transformed in DataLoader workers; torchvision is imported only when one is built.

    compress train --schedule s.yaml --dataset imagefolder --data-dir ~/flowers --arch resnet18
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compress.datasets.loaders import assemble
from compress.datasets.registry import DataBundle, DataOptions, register
from compress.datasets.torchvision_sets import data_root, normalized
from compress.errors import CompressError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FOLDER_HELP = "DIR/train/<class>/<image>, and optionally DIR/val/<class>/<image> and DIR/test/<class>/<image>"


def folder_classes(train_dir: Path) -> list[str]:
    """The class names as ``ImageFolder`` sees them: the sorted subfolders."""
    return sorted(entry.name for entry in os.scandir(train_dir) if entry.is_dir())


def _train_dir(name: str, options: DataOptions) -> Path:
    root = data_root(name, options, f"{name} reads {FOLDER_HELP}")
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
    train_tf = normalized(IMAGENET_MEAN, IMAGENET_STD, T.RandomResizedCrop(size), T.RandomHorizontalFlip())
    eval_tf = normalized(IMAGENET_MEAN, IMAGENET_STD, T.Resize(round(size * 256 / 224)), T.CenterCrop(size))
    return assemble(
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
