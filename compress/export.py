"""ONNX export of a model, verified in ONNX Runtime before it is kept (the optional extra ``export``:
onnx, onnxscript for torch's dynamo exporter, onnxruntime to check the result).

    require_exporter()                                   # our one-line hint when the extra is missing
    done = export_onnx(model, inputs, Path("model.onnx"), dynamic_batch=True, metadata={"num_classes": "10"})
    done.max_abs_diff, done.opset, done.input_shape      # ['batch', 1, 28, 28]

Why verified: an exporter can translate an op differently (padding, pooling rounding, a constant
folded wrongly), and a deployed model that silently differs from the trained one is the worst
outcome. The file is written to a temporary name in the target directory, run in ONNX Runtime on
the given inputs (at the full batch and, with a dynamic batch, at batch 1 too), and renamed only
when every output is within ``TOLERANCE`` of PyTorch's (relative to outputs beyond 1, as thinning
checks); otherwise nothing is left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.checkpoint import file_mode
from compress.errors import CompressError
from compress.thinning.apply import allowed_difference, max_difference, outputs

TOLERANCE = 1e-4
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = (
    'compress export needs onnx, onnxscript and onnxruntime: pip install -e ".[export]" '
    "(or pip install onnx onnxscript onnxruntime)"
)


@dataclass(frozen=True)
class Exported:
    """What was written, for the command's summary."""

    path: Path
    opset: int
    input_shape: list[int | str]
    output_shapes: list[list[int | str]]
    size: int
    max_abs_diff: float
    batches: list[int]  # the batch sizes ONNX Runtime was checked at


def require_exporter() -> None:
    """The extra is optional: without it, one line that says what to install (exit 2 in the CLI).
    The dynamo exporter (``torch.onnx.export(dynamo=True)``) came with torch 2.5."""
    if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) < (2, 5):
        raise CompressError(f"compress export needs torch >= 2.5 (its dynamo ONNX exporter), not {torch.__version__}")
    for name in PACKAGES:
        try:
            __import__(name)
        except ImportError:
            raise CompressError(INSTALL_HINT) from None


def export_onnx(model: nn.Module, inputs: torch.Tensor, output: Path, *, dynamic_batch: bool = True,
                opset: int | None = None, metadata: dict[str, str] | None = None,
                tolerance: float = TOLERANCE) -> Exported:  # fmt: skip
    """Export ``model`` (eval mode) for inputs shaped like ``inputs``, check it in ONNX Runtime on
    ``inputs`` and write ``output`` only if it agrees. With ``dynamic_batch`` the first dimension is
    the symbol ``batch``; else it is fixed to ``len(inputs)``."""
    require_exporter()
    model = model.eval()
    batches = [len(inputs), 1] if dynamic_batch and len(inputs) > 1 else [len(inputs)]
    expected = {b: _reference(model, inputs[:b]) for b in batches}
    program = _program(model, inputs, dynamic_batch, opset, single_output=len(expected[batches[0]]) == 1)
    program.model.metadata_props.update(metadata or {})
    tmp = _temporary(output)
    try:
        try:
            program.save(str(tmp), external_data=False)
        except (OSError, ValueError) as exc:
            raise CompressError(f"-o: cannot write {output}: {getattr(exc, 'strerror', None) or exc}") from None
        diff = max(max_difference(expected[b], run_onnx(tmp, inputs[:b])) for b in batches)
        bound = min(allowed_difference(expected[b], tolerance) for b in batches)
        if not diff <= bound:
            raise CompressError(
                f"{output}: not written: ONNX Runtime's outputs differ from PyTorch's by {diff:.3g} (> {bound:.3g}) "
                f"on {len(inputs)} inputs; the exporter translated some operation differently"
            )
        os.chmod(tmp, file_mode())  # mkstemp makes it 0600; follow the umask like the run's other files
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    shapes = _io_shapes(program)
    return Exported(output, program.model.opset_imports.get("", 0), shapes[0], shapes[1:], output.stat().st_size,
                    diff, batches)  # fmt: skip


def _reference(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """PyTorch's outputs, what the ONNX file must reproduce; a model that cannot take this batch
    size (one that fixes its batch in code) is told to fix it in the file too."""
    try:
        return outputs(model, inputs)
    except Exception as exc:  # the user's model code: any exception
        raise CompressError(
            f"the model fails in PyTorch on a batch of {len(inputs)} ({root_cause(exc)}); "
            "export it for one batch size with --batch N"
        ) from None


def _program(model: nn.Module, inputs: torch.Tensor, dynamic_batch: bool, opset: int | None, single_output: bool):
    """torch's dynamo exporter (the TorchScript one is deprecated), kept quiet: on failure it prints
    graphs and advice by the screenful. Any failure is the model meeting a limit of the exporter:
    one line, the root cause's first line."""
    example = inputs  # a batch of 1 would be specialized by torch.export even when dynamic: trace with 2
    if dynamic_batch and len(inputs) < 2:
        example = inputs.repeat(2, *[1] * (inputs.dim() - 1))
    dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        with _quiet():
            return torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dynamic, opset_version=opset,
                                     input_names=["input"], output_names=["logits"] if single_output else None,
                                     verbose=False)  # fmt: skip
    except Exception as exc:  # torch.export / onnxscript raise many types; all mean "cannot export this"
        cause = root_cause(exc)
        hint = "; --batch N fixes the batch size" if dynamic_batch and "batch" in cause else ""
        raise CompressError(f"the ONNX exporter cannot handle this model: {cause}{hint}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Python-level prints, warnings and log records of the exporter go nowhere for its duration."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def root_cause(exc: BaseException) -> str:
    """The innermost ``raise ... from`` cause, its type and first line (torch wraps the real reason
    in a generic "Failed to export the model" with terminal colours)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = ANSI.sub("", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def run_onnx(path: Path, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The model file's outputs in ONNX Runtime (CPU) on ``inputs``."""
    import onnxruntime

    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings go to the terminal from C++
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return [torch.from_numpy(out) for out in session.run(None, {name: inputs.numpy()})]
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
        raise CompressError(f"ONNX Runtime cannot run the exported model: {root_cause(exc)}") from None


def _temporary(output: Path) -> Path:
    """A fresh file beside ``output``, so that the final rename stays on one file system."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    except OSError as exc:
        raise CompressError(f"-o: cannot write in {output.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    return Path(name)


def _io_shapes(program: Any) -> list[list[int | str]]:
    """Input then output shapes, a symbol (``batch``) where a dimension is dynamic."""
    graph = program.model.graph
    values = [*graph.inputs, *graph.outputs]
    return [[d if isinstance(d, int) else str(d) for d in v.shape] if v.shape is not None else [] for v in values]


def class_names(dataset: str, data_dir: str | None) -> list[str] | None:
    """The dataset's class names, where they are known without loading it: the class folders of an
    image folder, MNIST's digits, Fashion-MNIST's and CIFAR's names as torchvision gives them."""
    if dataset in ("mnist5k", "mnist"):
        return [str(digit) for digit in range(10)]
    if dataset == "fashion_mnist":
        from torchvision.datasets import FashionMNIST

        return list(FashionMNIST.classes)
    if data_dir is None:
        return None
    root = Path(data_dir).expanduser()
    if dataset in ("imagefolder", "imagenet") and (root / "train").is_dir():
        from compress.datasets.folders import folder_classes

        return folder_classes(root / "train")
    return _cifar_names(dataset, root)


def _cifar_names(dataset: str, root: Path) -> list[str] | None:
    """CIFAR's names from torchvision's meta file (what ``CIFAR10.classes`` reads), if it is there."""
    import pickle

    where = {"cifar10": ("cifar-10-batches-py/batches.meta", "label_names"),
             "cifar100": ("cifar-100-python/meta", "fine_label_names")}.get(dataset)  # fmt: skip
    if where is None or not (root / where[0]).is_file():
        return None
    try:
        with open(root / where[0], "rb") as f:
            return [str(name) for name in pickle.load(f, encoding="latin1")[where[1]]]
    except (OSError, pickle.UnpicklingError, KeyError, TypeError, EOFError):
        return None


def metadata_props(names: list[str] | None, num_classes: int, extra: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props are string pairs: the class count, the names as a JSON list (a name may
    hold a comma), and what the model came from."""
    props = {"num_classes": str(num_classes)}
    if names is not None and len(names) == num_classes:
        props["class_names"] = json.dumps(names)
    props.update({key: str(value) for key, value in extra.items() if value is not None})
    return props
