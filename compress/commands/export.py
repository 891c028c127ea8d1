"""``compress export RUN_OR_CKPT -o model.onnx``: the checkpoint's model (dense or thinned) as an
ONNX file for deployment, checked in ONNX Runtime against PyTorch on real validation images before
it is kept; the class names and count go into the file's metadata."""

from __future__ import annotations

from pathlib import Path

import torch

from compress import __version__
from compress.artifacts import RunArtifacts, load_artifacts, model_from
from compress.commands.thin import real_batch
from compress.export import Exported, class_names, export_onnx, metadata_props, require_exporter
from compress.files import check_output

CHECK_BATCH = 64  # validation images the export is checked on when the batch is dynamic


def default_output(path: Path) -> Path:
    """``RUN/model.onnx`` for a run directory, ``NAME.onnx`` beside a checkpoint file."""
    path = Path(path)
    return path / "model.onnx" if path.is_dir() else path.with_suffix(".onnx")


def export_checkpoint(path: Path, output: Path | None = None, *, batch: int | None = None, overwrite: bool = False,
                      arch: str | None = None, opset: int | None = None) -> list[str]:  # fmt: skip
    """Load as every command does (a run directory means its best.pt), export, verify, summarize.
    ``batch`` None: the batch dimension is dynamic; else fixed to ``batch``."""
    require_exporter()
    artifacts = load_artifacts(path, "RUN_OR_CKPT", arch=arch)
    output = Path(output) if output is not None else default_output(path)
    check_output(output, artifacts.checkpoint, overwrite,
                 example="model.onnx", same="being exported; write the ONNX file elsewhere")
    model = model_from(artifacts)
    x, described = real_batch(artifacts, batch or CHECK_BATCH)
    if batch is not None and len(x) != batch:  # a validation split smaller than --batch: repeat its images
        x = x.repeat((batch + len(x) - 1) // len(x), *[1] * (x.dim() - 1))[:batch]
    with torch.inference_mode():
        out = model(x[:1])
    num_classes = int(out.shape[-1]) if torch.is_tensor(out) else config_classes(artifacts)
    metadata = _metadata(artifacts, num_classes)
    done = export_onnx(model, x, output, dynamic_batch=batch is None, opset=opset, metadata=metadata)
    return _summary(done, artifacts, path, metadata, described)


def config_classes(artifacts: RunArtifacts) -> int:
    """The dataset's class count, for a model whose output is not one tensor of logits."""
    from compress.datasets import dataset_shape
    from compress.experiment import data_options

    return dataset_shape(artifacts.config.dataset, data_options(artifacts.config)).num_classes


def _metadata(artifacts: RunArtifacts, num_classes: int) -> dict[str, str]:
    """Enough for a deployment to label predictions and trace the file back to its run."""
    config, state = artifacts.config, artifacts.state
    extra = {
        "arch": config.arch,
        "dataset": config.dataset,
        "checkpoint": str(artifacts.checkpoint),
        "epoch": state.epoch if state.epoch >= 0 else None,
        "thinned": "true" if state.thinned_spec else "false",
        "producer": f"compress {__version__}",
    }
    return metadata_props(class_names(config.dataset, config.data_dir), num_classes, extra)


def _shape(shape: list[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _summary(done: Exported, artifacts: RunArtifacts, path: Path, metadata: dict[str, str],
             described: str) -> list[str]:  # fmt: skip
    dynamic = isinstance(done.input_shape[0], str) if done.input_shape else False
    named = "class names" if "class_names" in metadata else "no class names (unknown without the dataset)"
    checked = " and ".join(str(b) for b in done.batches)
    lines = [
        f"exported {artifacts.checkpoint} -> {done.path}",
        f"  opset {done.opset}; input float32 {_shape(done.input_shape)} "
        f"({'dynamic batch; --batch N fixes it' if dynamic else 'fixed batch'}); "
        f"output {', '.join(_shape(s) for s in done.output_shapes)}",
        f"  metadata: num_classes {metadata['num_classes']}, {named}, arch {metadata['arch']}, "
        f"dataset {metadata['dataset']}, thinned {metadata['thinned']}",
        f"  file size {done.size:,} bytes",
        f"largest difference ONNX Runtime vs PyTorch on {described} (batch {checked}): {done.max_abs_diff:.3g}",
    ]
    thin = Path(path) / "thin.pt"
    if Path(path).is_dir() and not artifacts.state.thinned_spec and thin.exists():
        lines.append(f"note: this is the dense best.pt; {thin} is thinned: compress export {thin}")
    return lines
