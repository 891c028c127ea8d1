"""Trust (#15): no code from a checkpoint, no traceback from a file, no write outside the run directory.

Every case runs the real ``compress`` command in-process (``tests.helpers.invoke``: a traceback fails
the test) and checks what a user sees: the exit code, one line of error output, and which files
exist afterwards. One small trained run (module fixture) is the source of every checkpoint here.
"""

from __future__ import annotations

import copy
import errno
import importlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import invoke

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "schedules" / "lenet5-baseline.yaml"
SMALL = ("--epochs", "1", "--limit-batches", "1")


def _errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def _one_line_error(result, code: int = 2, *needles: str) -> str:
    """Exit ``code``, no traceback, exactly one line of output holding every needle; that line."""
    lines = _errors(result)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{result.output}"
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One epoch of lenet5-baseline on one batch: runs/r with best.pt and checkpoint.pt."""
    out = tmp_path_factory.mktemp("trained")
    result = invoke("train", "--schedule", BASELINE, *SMALL, "--out-dir", out, "--name", "r", "--no-plots")
    assert result.exit_code == 0, result.output
    return out / "r"


@pytest.fixture(scope="module")
def stored(trained) -> dict:
    return torch.load(trained / "checkpoint.pt", weights_only=True)


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- 1. a checkpoint names code

EVIL = """\
import pathlib
pathlib.Path(__file__).with_name("MARKER-{name}").write_text("imported")


def build(num_classes=10, in_channels=1, input_size=28):
    from compress.models import build_model

    return build_model("lenet5", num_classes=num_classes, in_channels=in_channels, input_size=input_size)
"""


@pytest.fixture
def evilmod(tmp_path, monkeypatch):
    """``evilmod.py`` in the current directory (and on sys.path): importing it writes MARKER-evilmod."""
    (tmp_path / "evilmod.py").write_text(EVIL.format(name="evilmod"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("evilmod", None)
    yield tmp_path / "MARKER-evilmod"
    sys.modules.pop("evilmod", None)


def _store_arch(path: Path, arch: str, where: str) -> None:
    state = _load(path)
    if where in ("arch", "both"):
        state["arch"] = arch
    if where in ("config", "both"):
        state["config"]["arch"] = arch
    torch.save(state, path)


def _refusers(run: Path, tmp_path: Path) -> dict[str, tuple]:
    return {
        "eval": ("eval", run),
        "report": ("report", run),
        "thin": ("thin", run, "-o", tmp_path / "thin.pt"),
        "plot": ("plot", run),
        "sense": ("sense", run, "--levels", "0.5", "--limit-batches", "1"),
        "train --resume": ("train", "--resume", run),
        "train --resume --reset-optimizer": (
            "train",
            "--resume",
            run,
            "--reset-optimizer",
            "--out-dir",
            tmp_path / "out",
            "--name",
            "tuned",
        ),  # fmt: skip
    }


@pytest.mark.parametrize("where", ["arch", "config", "both"])
@pytest.mark.parametrize("arch", ["evilmod:build", "sys:exit", "os:abort"])
def test_a_checkpoint_naming_code_is_refused_and_nothing_is_imported(evilmod, run_copy, tmp_path, arch, where):
    for name in ("best.pt", "checkpoint.pt"):
        _store_arch(run_copy / name, arch, where)
    before = _tree(tmp_path)
    for command, args in _refusers(run_copy, tmp_path).items():
        result = invoke(*args)
        line = _one_line_error(result, 2, f"add --arch {arch}", str(run_copy))
        assert "your own model" in line, (command, line)
        assert not evilmod.exists(), f"{command} imported evilmod"
        assert "evilmod" not in sys.modules, command
    assert _tree(tmp_path) == before, "a refused command wrote something"


def test_a_checkpoint_file_naming_code_is_refused_by_eval(evilmod, trained, tmp_path):
    file = tmp_path / "evil.pt"
    shutil.copy(trained / "best.pt", file)
    _store_arch(file, "evilmod:build", "both")
    _one_line_error(invoke("eval", file), 2, "--arch evilmod:build", str(file))
    other = invoke("eval", file, "--arch", "lenet5")
    _one_line_error(other, 2, "--arch evilmod:build", "(--arch lenet5 was given)")
    assert not evilmod.exists() and "evilmod" not in sys.modules


def test_naming_the_model_again_imports_it_and_eval_goes_on(evilmod, trained, tmp_path):
    file = tmp_path / "evil.pt"
    shutil.copy(trained / "best.pt", file)
    _store_arch(file, "evilmod:build", "both")
    result = invoke("eval", file, "--arch", "evilmod:build")
    assert result.exit_code == 0, result.output
    assert f"{file}: val  top1" in result.output
    assert evilmod.exists(), "--arch evilmod:build named: the module is imported"


# ----------------------------------------------------------------------------- 2. malformed checkpoints


def _mutated(stored: dict, change) -> dict:
    state = copy.deepcopy(stored)
    result = change(state)
    return state if result is None else result


MALFORMED = {  # the list: every command refuses these with one line naming the file
    "only format": lambda s: {"format": "compress-checkpoint"},
    "state_dict a string": lambda s: s.update(state_dict="weights"),
    "config lr abc": lambda s: s["config"].update(lr="abc"),
    "config missing": lambda s: s.pop("config") and None,
    "config a list": lambda s: s.update(config=[1, 2]),
    "scheduler a string": lambda s: s.update(scheduler="StepLR"),
    "optimizer an int": lambda s: s.update(optimizer=3),
    "state_dict keys not strings": lambda s: s.update(state_dict={0: torch.zeros(2)}),
    "thinned_spec of the wrong shape": lambda s: s.update(thinned_spec={"fc1": {"x": 1}}),
    "config arch an unknown model": lambda s: s["config"].update(arch="nosuchmodel"),
    "config dataset unknown": lambda s: s["config"].update(dataset="nosuchdata"),
}
COMMANDS = ["eval", "report", "thin", "train --resume"]


def _command(command: str, path: Path, tmp_path: Path) -> tuple:
    return {
        "eval": ("eval", path),
        "report": ("report", path),
        "thin": ("thin", path, "-o", tmp_path / "thin.pt", "--batch", "2"),
        "train --resume": (
            "train",
            "--resume",
            path,
            "--epochs",
            "2",
            "--out-dir",
            tmp_path / "out",
            "--name",
            "n",
            "--no-plots",
        ),  # fmt: skip
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_checkpoint_is_one_line_naming_the_file(stored, tmp_path, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.pt"
    torch.save(_mutated(stored, MALFORMED[case]), path)
    _one_line_error(invoke(*_command(command, path, tmp_path)), 2, str(path))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", ["truncated", "tensor file", "random bytes", "empty"])
def test_a_file_that_is_no_checkpoint_is_one_line_naming_it(trained, tmp_path, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.pt"
    if case == "truncated":
        path.write_bytes((trained / "checkpoint.pt").read_bytes()[:20_000])
    elif case == "tensor file":
        torch.save(torch.randn(4, 4), path)  # loads with weights_only: no pickled code, no checkpoint
    elif case == "random bytes":
        path.write_bytes(os.urandom(4096))
    else:
        path.write_bytes(b"")
    _one_line_error(invoke(*_command(command, path, tmp_path)), 2, str(path))


NESTED = {  # damage inside a field: a command that uses the field refuses the file (one line naming it), another
    # may ignore it (eval needs no optimizer); none may crash
    "optimizer of the wrong shape": lambda s: s.update(optimizer={"state": 1, "param_groups": "x"}),
    "scheduler masks an int": lambda s: s.update(scheduler={"masks": 3, "lr_schedulers": "x", "position": None}),
    "rng junk": lambda s: s.update(rng={"torch": 1, "python": "x"}),
    "epoch_totals junk": lambda s: s.update(epoch_totals={"seen": "x", "data": [1]}, next_step=1),
    "best_key of strings": lambda s: s.update(best_key=["a", None]),
    "schedule_text not YAML": lambda s: s.update(schedule_text="rules: [[["),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(NESTED))
def test_junk_inside_a_checkpoint_field_is_ignored_or_one_line(stored, tmp_path, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.pt"
    torch.save(_mutated(stored, NESTED[case]), path)
    result = invoke(*_command(command, path, tmp_path))
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        _one_line_error(result, 2, str(path))


# ----------------------------------------------------------------------------- 3. lr scheduler arguments
# tests/test_lr.py checks these through bind / check_lr_scheduler (messages, file, line, field); here the
# command a user runs: `compress check` exits 2 with one located line, before any training.


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("step_size: 0", "StepLR.step_size: must be a positive integer, got 0"),
        ("step_size: 2, gamma: .nan", "StepLR.gamma: must be a positive number, got nan"),
        ("step_size: 2, gamma: -0.5", "StepLR.gamma: must be a positive number, got -0.5"),
        ("step_size: 2, gamma: 1.0e+300", "gives a learning rate of"),  # 1e600 times the rate: inf in float64
        ("step_size: 7, gamma: 1.0e+300", "gives a learning rate of"),  # 1e298 times 0.01: beyond float32
    ],
)
def test_check_refuses_bad_step_lr_arguments(tmp_path, arguments, message):
    schedule = tmp_path / "lr.yaml"
    schedule.write_text(f"version: 1\nrules: []\nlr_scheduler: {{class: StepLR, {arguments}}}\n")
    _one_line_error(invoke("check", "--schedule", schedule, "--epochs", "10"), 2, f"{schedule}:3:", message)


# ----------------------------------------------------------------------------- 4 and 7. numbers


def test_a_proximal_step_beyond_float32_zeroes_the_layer_exactly(tmp_path):
    schedule = tmp_path / "big.yaml"
    schedule.write_text("version: 1\nrules: [{name: big, penalty: l1, strength: 1.0e30, layers: [fc1.weight]}]\n")
    result = invoke("train", "--schedule", schedule, "--lr", "1e9", *SMALL, "--out-dir", tmp_path, "--name", "r",
                    "--no-plots", "--table", "none")  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "checkpoint.pt"):
        fc1 = _load(tmp_path / "r" / name)["state_dict"]["fc1.weight"]
        assert torch.count_nonzero(fc1) == 0, name


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "must be >= 0"), ("nan", "must be a finite number"), ("inf", "must be a finite number"),
     ("1e39", "must be <= ")],
)  # fmt: skip
def test_a_bad_lr_flag_is_one_line(tmp_path, value, message):
    result = invoke("train", "--schedule", BASELINE, "--lr", value, *SMALL, "--out-dir", tmp_path, "--name", "r")
    _one_line_error(result, 2, "--lr", message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [(".nan", "must be a finite number"), ("1.0e+39", "must be <= "), ("-1", "must be >= 0"),
     ("abc", "expected a number")],
)  # fmt: skip
def test_a_bad_lr_in_a_config_file_is_one_located_line(tmp_path, value, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"lr: {value}\n")
    result = invoke("train", "--schedule", BASELINE, "--config", config, *SMALL, "--out-dir", tmp_path, "--name", "r")
    _one_line_error(result, 2, f"{config}:1:", "lr", message)
    assert not (tmp_path / "r").exists()


def test_divergence_in_epoch_0_writes_no_checkpoint(tmp_path):
    result = invoke("train", "--schedule", BASELINE, "--lr", "1e30", *SMALL, "--out-dir", tmp_path, "--name", "r",
                    "--no-plots")  # fmt: skip
    _one_line_error(result, 2, "validation loss", "after epoch 0", "no checkpoint was written")
    assert not (tmp_path / "r" / "best.pt").exists() and not (tmp_path / "r" / "checkpoint.pt").exists()


def test_divergence_on_validation_in_epoch_1_keeps_epoch_0_as_best(tmp_path):
    schedule = tmp_path / "jump.yaml"  # the rate jumps to 1e30 in epoch 1: one finite step, then inf weights
    schedule.write_text("version: 1\nrules: []\nlr_scheduler: {class: MultiStepLR, milestones: [1], gamma: 1.0e+32}\n")
    result = invoke("train", "--schedule", schedule, "--epochs", "3", "--limit-batches", "1", "--out-dir", tmp_path,
                    "--name", "r", "--no-plots")  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in _errors(result) if line.startswith("error")]
    assert len(errors) == 1, result.output
    run = tmp_path / "r"
    assert "validation loss" in errors[0] and "after epoch 1" in errors[0], errors[0]
    assert f"the last good checkpoint is {run / 'checkpoint.pt'} (after epoch 0)" in errors[0], errors[0]
    best, latest = _load(run / "best.pt"), _load(run / "checkpoint.pt")
    assert (best["epoch"], best["next_epoch"]) == (0, 1), "a diverged epoch never becomes best.pt"
    assert (latest["epoch"], latest["next_epoch"]) == (0, 1)
    assert all(torch.isfinite(t).all() for t in best["state_dict"].values())


# ----------------------------------------------------------------------------- 5. I/O failures

RUN3 = ("--epochs", "3", "--limit-batches", "2", "--no-plots", "--table", "none")


def _full(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("where", ["save_checkpoint", "write_epoch"])
def test_a_full_disk_mid_run_is_exit_1_then_resume_matches_an_unbroken_run(tmp_path, monkeypatch, where):
    import compress.recorder as recorder
    from compress.runs import RunFiles

    reference = invoke("train", "--schedule", BASELINE, *RUN3, "--out-dir", tmp_path, "--name", "ref")
    assert reference.exit_code == 0, reference.output
    run = tmp_path / "cut"
    if where == "save_checkpoint":
        real_save = recorder.save_checkpoint

        def save(state, path):
            if state.next_epoch >= 2:  # from the second epoch on
                raise _full(path)
            real_save(state, path)

        monkeypatch.setattr(recorder, "save_checkpoint", save)
        failed = run / "checkpoint.pt"
    else:
        real_write = RunFiles.write_epoch

        def write_epoch(self, result, layers):
            if result.epoch >= 1:
                raise _full(self.path / "metrics.csv")
            return real_write(self, result, layers)

        monkeypatch.setattr(RunFiles, "write_epoch", write_epoch)
        failed = run / "metrics.csv"
    cut = invoke("train", "--schedule", BASELINE, *RUN3, "--out-dir", tmp_path, "--name", "cut")
    errors = [line for line in _errors(cut) if line.startswith("error")]
    assert cut.exit_code == 1 and "Traceback" not in cut.output, cut.output
    assert len(errors) == 1, cut.output
    for needle in (str(failed), "No space left on device", f"the last complete checkpoint is {run / 'checkpoint.pt'}",
                   f"compress train --resume {run}"):  # fmt: skip
        assert needle in errors[0], (needle, errors[0])
    assert _load(run / "checkpoint.pt")["next_epoch"] == 1
    monkeypatch.undo()
    resumed = invoke("train", "--resume", run, "--epochs", "3")
    assert resumed.exit_code == 0, resumed.output
    ours, theirs = _load(run / "checkpoint.pt"), _load(tmp_path / "ref" / "checkpoint.pt")
    assert ours["next_epoch"] == theirs["next_epoch"] == 3
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, tensor in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], tensor), key
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]


def test_a_run_directory_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if out in (self, *self.parents):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = invoke("train", "--schedule", BASELINE, *SMALL, "--out-dir", out, "--name", "r")
    _one_line_error(result, 2, str(out / "r"), "Permission denied")
    assert not out.exists()


def test_a_run_directory_whose_files_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    import compress.recorder as recorder

    def refuse(out_dir, name, *, overwrite=False):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(out_dir) / name))

    monkeypatch.setattr(recorder, "create_run_dir", refuse)
    result = invoke("train", "--schedule", BASELINE, *SMALL, "--out-dir", tmp_path / "out", "--name", "r")
    _one_line_error(result, 2, "--out-dir", str(tmp_path / "out" / "r"), "Permission denied")


# ----------------------------------------------------------------------------- 6. run names


@pytest.mark.parametrize("name", ["../../escape", "ABSOLUTE", ".", "..", "a/b", "a\\b", ""])
def test_a_run_name_is_one_directory_inside_out_dir(tmp_path, name):
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    if name == "ABSOLUTE":
        name = str(tmp_path.parent / f"{tmp_path.name}-absolute-escape")
    before = _tree(tmp_path.parent)
    result = invoke("train", "--schedule", BASELINE, *SMALL, "--out-dir", out, "--name", name, "--no-plots")
    _one_line_error(result, 2, "--name", "one directory name inside --out-dir")
    assert _tree(tmp_path.parent) == before


@pytest.mark.parametrize("via", ["--config", "the schedule's config:"])
def test_a_run_name_in_a_config_file_is_checked_too(tmp_path, via):
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nlimit_batches: 1\nname: ../x\n")
    if via == "--config":
        args = ("--schedule", BASELINE, "--config", config)
    else:
        schedule = tmp_path / "s.yaml"
        schedule.write_text("version: 1\nconfig: c.yaml\nrules: []\n")
        args = ("--schedule", schedule)
    before = _tree(tmp_path.parent)
    result = invoke("train", *args, "--out-dir", out, "--no-plots")
    _one_line_error(result, 2, "name", "one directory name inside --out-dir")
    assert _tree(tmp_path.parent) == before


# ----------------------------------------------------------------------------- 9. finished runs, headers, modes


def test_resuming_a_finished_run_says_so_and_writes_nothing(run_copy):
    before = _mtimes(run_copy)
    result = invoke("train", "--resume", run_copy)
    assert result.exit_code == 0, result.output
    lines = _errors(result)
    assert len(lines) == 1, result.output
    assert "the run is finished (1 of 1 epochs)" in lines[0], lines[0]
    assert f"compress train --resume {run_copy} --epochs N" in lines[0], lines[0]
    assert _mtimes(run_copy) == before, "a finished run was touched"


@pytest.mark.parametrize("steps", [0, 1])
def test_report_of_a_run_stopped_in_its_first_epoch_names_no_epoch_minus_1(tmp_path, monkeypatch, steps):
    from compress.commands.train import StopOnSignal

    asked = {"n": 0}

    def requested(self):
        asked["n"] += 1
        if asked["n"] > steps:
            self.signum = signal.SIGTERM
        return self.signum is not None

    monkeypatch.setattr(StopOnSignal, "requested", requested)
    result = invoke("train", "--schedule", BASELINE, "--epochs", "1", "--limit-batches", "2", "--out-dir", tmp_path,
                    "--name", "r", "--no-plots")  # fmt: skip
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    monkeypatch.undo()
    checkpoint = tmp_path / "r" / "checkpoint.pt"
    state = _load(checkpoint)
    assert (state["epoch"], state["interrupted"], state["next_step"]) == (-1, True, steps)
    report = invoke("report", checkpoint)
    assert report.exit_code == 0, report.output
    assert "epoch -1" not in report.output
    assert f"stopped in epoch 0 before step {steps}" in report.output.splitlines()[0]


def test_report_of_a_checkpoint_from_before_any_epoch(stored, tmp_path):
    path = tmp_path / "start.pt"
    torch.save(_mutated(stored, lambda s: s.update(epoch=-1, next_epoch=0, top1=None)), path)
    report = invoke("report", path)
    assert report.exit_code == 0, report.output
    assert "epoch -1" not in report.output and "before any epoch" in report.output.splitlines()[0]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_checkpoints_follow_the_umask(tmp_path, umask, mode):
    from compress.checkpoint import RunState, save_checkpoint

    state = RunState(arch="lenet5", state_dict={"w": torch.ones(2)}, config={}, schedule_text="", schedule_source="s")
    old = os.umask(umask)
    try:
        save_checkpoint(state, tmp_path / "direct.pt")
        if umask == 0o027:  # and what a run writes
            result = invoke("train", "--schedule", BASELINE, *SMALL, "--out-dir", tmp_path, "--name", "r", "--no-plots")
            assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    assert (tmp_path / "direct.pt").stat().st_mode & 0o777 == mode
    if umask == 0o027:
        for name in ("best.pt", "checkpoint.pt"):
            assert (tmp_path / "r" / name).stat().st_mode & 0o777 == mode, name
