"""Every command the README shows is run here, on the runs the README makes, or named with the
reason it cannot be: a README line that stops working fails this file, and a new README command
without an entry below fails it too.

The README's commands are the lines of its ``bash`` blocks (``\\`` continuations joined, ``&&``
chains split, comments dropped) and its ``python`` block. What the test changes before running a
command is listed in SUBSTITUTIONS with the reason; nothing else is changed except that training
commands and tune's trials get ``--limit-batches 2`` and a short ``--epochs``, and ``compress sense``
evaluates one batch per level (``--limit-batches 1``), so the file stays fast."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest
import torch
import torchvision

from tests.helpers import invoke
from tests.tiny_data import write_cifar, write_image_folder, write_mnist

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

NOT_RUN = {
    "pip install": "the installation: .ci/run and the fresh-venv check before a release run it",
    "pytest": "the test suite itself",
    "torchrun": "tests/test_distributed.py runs torchrun with two CPU processes (train, resume, signals)",
}

SUBSTITUTIONS = [  # (README text, what the test runs instead, why)
    ("--device cuda", "--device cpu", "tests run on the CPU"),
    ("~/data/cifar10", "{cifar}", "tiny CIFAR-10 files the test writes (no download, ever)"),
    ("~/data", "{mnist}", "tiny MNIST and CIFAR-10 files the test writes; --download finds them present"),
    ("~/flowers", "{flowers}", "a tiny image folder the test writes"),
    ("~/weights/resnet18-f37072fd.pth", "{weights}", "a randomly initialised torchvision resnet18 state_dict"),
    ("--input-size 224", "--input-size 32", "the same code path at a size the CPU runs in seconds"),
    ("--epochs 30", "--epochs 4", "train longer than the run did, in seconds"),
    ("--trials 30 --epochs 10", "--trials 2 --epochs 1", "a study of two one-epoch trials"),
    ("runs/lenet5-filters-20261126-101500", "{run}", "the run this test made"),
    ("runs/<run>", "{run}", "the run this test made"),
]

MY_YAML = """\
rules:
  - {name: convs, penalty: group_lasso, groups: filters, strength: 0.001, layers: ["*conv*.weight"]}
"""

MY_MODELS = """\
from collections import OrderedDict

import torch.nn as nn


def build_net(num_classes, in_channels):
    layers = [("conv1", nn.Conv2d(in_channels, 8, 3)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
              ("flat", nn.Flatten()), ("fc", nn.Linear(8, num_classes))]
    return nn.Sequential(OrderedDict(layers))
"""


def _fences(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced block."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, start, lines = line[3:].strip(), number + 1, []
            else:
                blocks.append((language, start, lines))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def readme_commands() -> list[tuple[int, str]]:
    """(line, command) for every shell command in the README's bash blocks."""
    commands = []
    for language, start, lines in _fences(README.read_text()):
        if language != "bash":
            continue
        pending, first = "", 0
        for offset, line in enumerate(lines):
            line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
            if not line.strip():
                continue
            first = first or start + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            for part in (pending + line).split("&&"):
                commands.append((first, " ".join(part.split())))
            pending, first = "", 0
    return commands


def readme_python() -> str:
    (source,) = ["\n".join(lines) for language, _, lines in _fences(README.read_text()) if language == "python"]
    return source


def reason_not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def test_every_readme_command_is_run_or_named_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= 20, commands
    for line, command in commands:
        assert reason_not_run(command) or command.startswith("compress "), f"README.md:{line}: {command}"
    assert sum(1 for _, c in commands if c.startswith("compress ")) >= 18


def _argv(command: str, places: dict[str, str]) -> list[str]:
    for old, new, _ in SUBSTITUTIONS:
        command = command.replace(old, new)
    argv = [arg.format(**places) for arg in shlex.split(command)][1:]
    if argv[0] in ("train", "tune"):
        if argv[0] == "train" and "--resume" not in argv and "--epochs" not in argv:
            argv += ["--epochs", "1"]
        argv += ["--limit-batches", "2"]
    if argv[0] == "sense":
        argv += ["--limit-batches", "1"]
    return argv


@pytest.fixture
def readme_world(tmp_path, monkeypatch, no_cifar_checksums):
    """A working directory like the project's: its schedules and configs, a run made from the
    README's own schedule, and the files the README's paths stand for."""
    for folder in ("schedules", "configs"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "my.yaml").write_text(MY_YAML)
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "100")
    weights = tmp_path / "weights" / "resnet18-f37072fd.pth"
    weights.parent.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    result = invoke("train", "--schedule", "schedules/lenet5-filters.yaml", "--epochs", "2", "--limit-batches", "2",
                    "--out-dir", "runs", "--name", "lenet5-filters")  # fmt: skip
    assert result.exit_code == 0, result.output
    return {
        "run": "runs/lenet5-filters",
        "mnist": str(write_cifar(write_mnist(tmp_path / "data"))),
        "cifar": str(write_cifar(tmp_path / "data" / "cifar10")),
        "flowers": str(write_image_folder(tmp_path / "flowers")),
        "weights": str(weights),
    }


@pytest.mark.slow
def test_readme_commands_work(readme_world):
    ran = []
    for line, command in readme_commands():
        if reason_not_run(command):
            continue
        argv = _argv(command, readme_world)
        result = invoke(*argv)
        assert result.exit_code == 0, f"README.md:{line}: {command}\nran: compress {' '.join(argv)}\n{result.output}"
        ran.append(argv[0])
    expected = {"train", "check", "thin", "report", "eval", "plot", "datasets", "models", "sense", "tune", "export"}
    assert expected <= set(ran)
    assert Path("runs/lenet5-filters/sensitivity.csv").exists()
    assert Path("runs/lenet5-filters/sensitivity-schedule.yaml").exists()
    for png in ("accuracy_sparsity.png", "layer_sparsity.png", "group_norms.png"):
        assert (Path("runs/lenet5-filters") / png).exists()
    assert Path("small.pt").exists()
    assert Path("lenet5.onnx").exists() and Path("runs/lenet5-filters/model.onnx").exists()
    assert len(list(Path("tune/lenet5/trials").iterdir())) == 2 and Path("tune/lenet5/pareto.csv").exists()


@pytest.mark.slow
def test_readme_own_loop_runs(tmp_path, monkeypatch):
    """The README's own-loop snippet exactly as written (two epochs of mnist5k, about a second):
    the scheduler's proximal steps leave whole filters at exactly zero."""
    (tmp_path / "schedules").symlink_to(ROOT / "schedules")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "loop.py"
    path.write_text(readme_python())
    namespace = runpy.run_path(str(path))
    model = namespace["model"]
    zero_filters = sum(int((p.flatten(1) == 0).all(1).sum()) for p in model.parameters() if p.dim() == 4)
    assert zero_filters > 0


def test_readme_points_only_inside_the_project():
    """A clone has no ../shared: no tracked document or source names a path outside the project."""
    offenders = []
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("compress/**/*"), *ROOT.glob("tools/*"),
                 *ROOT.glob("benchmarks/*"), *ROOT.glob("tests/**/*.py"), *ROOT.glob(".ci/*")]:  # fmt: skip
        if path.is_file() and path.suffix in {".md", ".py", ".yaml", ".toml", ""} and path != Path(__file__):
            text = path.read_text(errors="replace")
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"\.\./shared\S*", text)]
    assert not offenders
