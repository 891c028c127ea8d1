"""compress export: the ONNX file of a thinned LeNet-5, a thinned ResNet-20 and a ResNet-20 checkpoint runs in ONNX
Runtime with PyTorch's outputs (dynamic and fixed batch, metadata); bad input is one line, exit 2;
nothing is written unless it was verified."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from compress.errors import CompressError
from tests.helpers import invoke
from tests.tiny_data import write_image_folder

ROOT = Path(__file__).resolve().parent.parent
PRUNE_FILTERS = """\
version: 1
rules:
  - {name: f, prune: l1, groups: filters, sparsity: 0.5, layers: [conv1.weight, conv2.weight], epochs: [0, 1]}
"""


def _needs_extra() -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


def _onnx_outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _pytorch_model(checkpoint: Path) -> torch.nn.Module:
    from compress.artifacts import load_artifacts, model_from

    return model_from(load_artifacts(checkpoint))


def _metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _one_line_error(result, *words: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(w in lines[0] for w in words), result.output


@pytest.fixture(scope="module")
def thinned_lenet(tmp_path_factory) -> Path:
    """A LeNet-5 run whose conv filters were half pruned, thinned by ``compress thin``: RUN/thin.pt."""
    tmp = tmp_path_factory.mktemp("lenet")
    (tmp / "prune.yaml").write_text(PRUNE_FILTERS)
    trained = invoke("train", "--schedule", tmp / "prune.yaml", "--epochs", 1, "--limit-batches", 2, "--out-dir", tmp,
                     "--name", "r", "--no-plots", "--table", "none")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    thinned = invoke("thin", tmp / "r")
    assert thinned.exit_code == 0 and "conv1: out_channels 20 -> 10" in thinned.output, thinned.output
    return tmp / "r"


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory) -> Path:
    """A one-batch ResNet-20 run on a tiny 3-class image folder of 32x32 images."""
    tmp = tmp_path_factory.mktemp("resnet")
    data = write_image_folder(tmp / "images", size=32)
    trained = invoke("train", "--schedule", ROOT / "schedules/lenet5-baseline.yaml", "--arch", "resnet20_cifar",
                     "--dataset", "imagefolder", "--data-dir", data, "--input-size", 32, "--workers", 0,
                     "--epochs", 1, "--limit-batches", 1, "--out-dir", tmp, "--name", "rn", "--no-plots",
                     "--table", "none")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    return tmp / "rn"


@pytest.mark.slow
def test_a_thinned_lenet5_runs_in_onnxruntime_at_any_batch_with_pytorchs_outputs(thinned_lenet):
    _needs_extra()
    result = invoke("export", thinned_lenet / "thin.pt")
    assert result.exit_code == 0, result.output
    onnx_file = thinned_lenet / "thin.onnx"  # NAME.onnx beside a checkpoint file
    assert f"-> {onnx_file}" in result.output and "opset " in result.output and "file size " in result.output
    assert "input float32 [batch, 1, 28, 28]" in result.output
    assert "largest difference ONNX Runtime vs PyTorch on 64 validation images of mnist5k" in result.output
    model = _pytorch_model(thinned_lenet / "thin.pt")
    assert model.conv1.out_channels == 10
    for batch in (1, 3):
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        assert float((_onnx_outputs(onnx_file, x) - expected).abs().max()) < 1e-4
    meta = _metadata(onnx_file)
    assert meta["num_classes"] == "10" and json.loads(meta["class_names"]) == [str(d) for d in range(10)]
    assert meta["thinned"] == "true" and meta["arch"] == "lenet5" and meta["dataset"] == "mnist5k"
    again = invoke("export", thinned_lenet / "thin.pt")  # the file exists now: never replaced unasked
    _one_line_error(again, "thin.onnx exists", "--overwrite")


@pytest.mark.slow
def test_a_resnet20_checkpoint_exports_with_a_fixed_batch_and_its_folder_class_names(resnet_run, tmp_path):
    _needs_extra()
    out = tmp_path / "rn.onnx"
    result = invoke("export", resnet_run, "-o", out, "--batch", 2)
    assert result.exit_code == 0, result.output
    assert "input float32 [2, 3, 32, 32] (fixed batch)" in result.output and "output [2, 3]" in result.output
    model = _pytorch_model(resnet_run / "best.pt")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((_onnx_outputs(out, x) - model(x)).abs().max()) < 1e-4
    meta = _metadata(out)
    assert json.loads(meta["class_names"]) == ["class0000", "class0001", "class0002"] and meta["num_classes"] == "3"
    assert meta["arch"] == "resnet20_cifar" and meta["thinned"] == "false"
    import onnxruntime

    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):
        _onnx_outputs(out, x[:1])  # the batch is fixed to 2
    assert [p.name for p in tmp_path.iterdir()] == ["rn.onnx"]  # no temporary file left beside it


PRUNE_RESNET_CHANNELS = """\
version: 1
rules:
  - {name: c, prune: l1, groups: channels, sparsity: 0.5, layers: ["layer*.conv2.weight"], epochs: [0, 1]}
"""


@pytest.mark.slow
def test_a_thinned_resnet20_runs_in_onnxruntime_with_pytorchs_outputs(tmp_path):
    """Half the input channels of every block's second conv pruned: thinning removes them with the
    first conv's filters and BatchNorm entries; the ONNX file of thin.pt has the smaller convs."""
    _needs_extra()
    import onnx

    (tmp_path / "prune.yaml").write_text(PRUNE_RESNET_CHANNELS)
    data = write_image_folder(tmp_path / "images", size=32)
    trained = invoke("train", "--schedule", tmp_path / "prune.yaml", "--arch", "resnet20_cifar", "--dataset",
                     "imagefolder", "--data-dir", data, "--input-size", 32, "--workers", 0, "--epochs", 1,
                     "--limit-batches", 1, "--out-dir", tmp_path, "--name", "rn", "--no-plots",
                     "--table", "none")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    thinned = invoke("thin", tmp_path / "rn")
    assert thinned.exit_code == 0 and "layer3.2.conv1: out_channels 64 -> 32" in thinned.output, thinned.output
    result = invoke("export", tmp_path / "rn" / "thin.pt")
    assert result.exit_code == 0, result.output
    out = tmp_path / "rn" / "thin.onnx"
    model = _pytorch_model(tmp_path / "rn" / "thin.pt")
    for batch in (3, 1):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert float((_onnx_outputs(out, x) - model(x)).abs().max()) < 1e-4
    assert _metadata(out)["thinned"] == "true"
    shapes = {tuple(t.dims) for t in onnx.load(str(out)).graph.initializer}
    assert (32, 64, 3, 3) in shapes and (64, 32, 3, 3) in shapes  # layer3's convs: 64 -> 32 -> 64 channels
    convs = [tuple(t.dims) for t in onnx.load(str(out)).graph.initializer if len(t.dims) == 4]
    assert sum(d[0] * d[1] for d in convs) < 0.6 * sum(m.weight.numel() // (m.weight.shape[2] * m.weight.shape[3])
                                                       for m in _dense_resnet_convs())  # fmt: skip


def _dense_resnet_convs() -> list[torch.nn.Conv2d]:
    from compress.models import build_model

    dense = build_model("resnet20_cifar", num_classes=3, in_channels=3, input_size=32)
    return [m for m in dense.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(thinned_lenet, tmp_path):
    _needs_extra()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    _one_line_error(invoke("export", tmp_path / "notes.txt", "-o", tmp_path / "x.onnx"), "RUN_OR_CKPT", "notes.txt")
    _one_line_error(invoke("export", tmp_path / "missing.pt"), "RUN_OR_CKPT", "missing.pt")
    _one_line_error(invoke("export", thinned_lenet, "-o", tmp_path / "no" / "x.onnx"), "does not exist")
    _one_line_error(invoke("export", thinned_lenet, "-o", tmp_path), "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_without_the_export_extra_a_one_line_hint(thinned_lenet, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    result = invoke("export", thinned_lenet, "-o", tmp_path / "m.onnx")
    _one_line_error(result, 'pip install -e ".[export]"')
    assert not (tmp_path / "m.onnx").exists()


class _Branchy(torch.nn.Module):
    """Data-dependent control flow: what torch.export cannot capture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if x.sum() > 0 else -x.flatten(1)


@pytest.mark.slow
def test_a_model_the_exporter_cannot_handle_is_one_line_and_writes_nothing(tmp_path):
    _needs_extra()
    from compress.export import export_onnx

    with pytest.raises(CompressError) as info:
        export_onnx(_Branchy(), torch.randn(4, 1, 2, 2), tmp_path / "m.onnx")
    assert "the ONNX exporter cannot handle this model" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_export_that_differs_from_pytorch_is_never_written(tmp_path, monkeypatch):
    _needs_extra()
    import compress.export as export

    real = export.run_onnx
    monkeypatch.setattr(export, "run_onnx", lambda path, x: [t + 1e-3 for t in real(path, x)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with pytest.raises(CompressError, match=r"not written: ONNX Runtime's outputs differ from PyTorch's by 0\.001"):
        export.export_onnx(model, torch.randn(5, 1, 2, 2), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
