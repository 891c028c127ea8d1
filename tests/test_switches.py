"""The speed switches: --amp (bf16 / fp16 with a gradient scaler), --channels-last, --compile and
--grad-clip, each against what it must not change: penalty gradients on true gradients, proximal
steps only on steps taken, plain parameter names, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from compress.schedule import parse_schedule
from compress.scheduler import CompressionScheduler, bind
from compress.training import Loop, _step

PENALTY = """\
rules:
  - {name: gl, penalty: group_lasso, groups: filters, strength: 0.05, layers: [0.weight], mode: penalty}
  - {name: l1, penalty: l1, strength: 0.001, layers: [3.weight], mode: proximal}
"""


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4))


def _setup(model: nn.Module, text: str = PENALTY):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = parse_schedule(text, "s.yaml")
    rules, _ = bind(schedule, model, epochs=1)
    scheduler = CompressionScheduler(rules, optimizer, schedule)
    scheduler.on_epoch_begin(0)
    return optimizer, scheduler


def _batches(n: int = 4):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator))
            for _ in range(n)]  # fmt: skip


def _train(model: nn.Module, loop: Loop, text: str = PENALTY) -> nn.Module:
    optimizer, scheduler = _setup(model, text)
    for x, y in _batches():
        _step(model, nn.CrossEntropyLoss(), optimizer, scheduler, loop.inputs(x), y, loop)
    return model


def test_the_fp16_scaler_unscales_before_the_penalties_and_clipping_see_the_gradients():
    """A power-of-two loss scale and no autocast: unscaled gradients are the float32 ones to the bit,
    so a run with the scaler equals a plain run exactly, penalties, proximal steps and clipping
    included. Had a penalty gradient been added to the scaled gradient, it would weigh 2^16 less."""
    plain = _train(_net(), Loop(1, grad_clip=0.5))
    scaled = _train(_net(), Loop(1, grad_clip=0.5, scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16)))
    for (name, a), b in zip(plain.state_dict().items(), scaled.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_step_the_scaler_skips_skips_the_proximal_step_too():
    """Inputs so large that the scaled gradients overflow: the scaler skips the optimizer step and
    backs off, and the proximal step and masks (after_step) do not run either."""
    model = _net()
    optimizer, scheduler = _setup(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = copy.deepcopy(model.state_dict())
    x, y = _batches(1)[0]
    _step(model, nn.CrossEntropyLoss(), optimizer, scheduler, x * 1e36, y, Loop(1, scaler=scaler))
    assert scaler.get_scale() < 2.0**16, "the scaler saw inf gradients and backed off"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"{name} moved: the proximal step ran on a skipped step"


class _Recorder:
    """Hooks that only look: the gradient norm the penalties would be added to."""

    def __init__(self, model: nn.Module):
        self.model, self.norms = model, []

    def before_step(self):
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return {}

    def after_step(self, lr):
        return {}


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_clipping_acts_on_the_data_gradient_before_the_hooks(clip):
    model = _net()
    hooks = _Recorder(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batches(1)[0]
    _step(model, nn.CrossEntropyLoss(), optimizer, hooks, x, y, Loop(1, grad_clip=clip))
    reference = _net()
    nn.CrossEntropyLoss()(reference(x), y).backward()
    raw = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()])))
    assert hooks.norms[0] == pytest.approx(min(raw, clip), rel=1e-5)


def test_bf16_autocast_runs_the_forward_in_bf16_and_keeps_float32_weights():
    model = _net()
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trained = _train(model, Loop(1, amp="bf16"))
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert not torch.equal(trained[0].weight, _net()[0].weight)


def test_channels_last_inputs_and_the_same_numbers():
    model = _net().to(memory_format=torch.channels_last)
    trained = _train(model, Loop(1, channels_last=True))
    assert trained[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = _train(_net(), Loop(1))
    for (name, a), b in zip(plain.state_dict().items(), trained.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


# --- the CLI -------------------------------------------------------------------------------------


def _run(cli, tmp_path, name: str, *flags, epochs: int = 2):
    result = cli("train", "--schedule", tmp_path / "s.yaml", "--epochs", epochs, "--limit-batches", "3",
                 "--out-dir", tmp_path, "--name", name, "--no-plots", *flags)  # fmt: skip
    assert result.exit_code == 0, result.output
    return torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)


LENET = """\
rules:
  - {name: filters, penalty: group_lasso, groups: filters, strength: 0.02, layers: [conv2.weight]}
  - {name: fc, prune: l1, sparsity: {from: 0.2, to: 0.6}, layers: [fc1.weight], epochs: [0, 3]}
"""


SWITCHES = [
    (("--amp", "bf16"), ("--amp", "fp16")),
    (("--amp", "fp16", "--grad-clip", "1.0"), ("--grad-clip", "2.0")),
    (("--channels-last",), ("--no-channels-last",)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "other"), SWITCHES)
def test_each_switch_is_recorded_pinned_and_resumes_exactly(cli, tmp_path, flags, other):
    (tmp_path / "s.yaml").write_text(LENET)
    whole = _run(cli, tmp_path, "whole", *flags, epochs=3)
    setting = flags[0][2:].replace("-", "_")
    assert whole["config"][setting] not in (None, False)
    if "fp16" in flags:
        assert whole["scaler"] and whole["scaler"]["scale"] > 0
    _run(cli, tmp_path, "split", *flags)
    refused = cli("train", "--resume", tmp_path / "split", "--epochs", "3", *other)
    assert refused.exit_code == 2 and "an exact resume keeps them" in refused.output
    assert cli("train", "--resume", tmp_path / "split", "--epochs", "3").exit_code == 0
    resumed = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name


@pytest.mark.slow
def test_compile_keeps_plain_names_and_resumes(cli, tmp_path):
    """One test: compiling LeNet-5's forward costs about 20 s on the CPU."""
    pruned = "  - {name: half, prune: l1, groups: filters, sparsity: 0.5, layers: [conv1.weight], epochs: [0, 1]}\n"
    (tmp_path / "s.yaml").write_text(LENET + pruned + "thin: 1\n")
    state = _run(cli, tmp_path, "c", "--compile")
    assert state["config"]["compile"] is True
    assert not any("_orig_mod" in k for k in state["state_dict"]) and "conv2.weight" in state["state_dict"]
    assert state["thinned_spec"], "thinning traced the plain model while its forward was compiled"
    assert cli("train", "--resume", tmp_path / "c", "--epochs", "3").exit_code == 0
    report = cli("report", tmp_path / "c")
    assert report.exit_code == 0 and "_orig_mod" not in report.output


def test_compile_without_a_compiler_is_one_line(cli, tmp_path, monkeypatch):
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in ("g++", "c++", "clang++") else
                        real(name, *a, **k))  # fmt: skip
    (tmp_path / "s.yaml").write_text(LENET)
    result = cli("train", "--schedule", tmp_path / "s.yaml", "--compile", "--epochs", "1", "--out-dir", tmp_path)
    assert result.exit_code == 2 and result.output.strip().startswith("error: --compile: torch.compile needs a C++")


def test_config_files_take_the_switches(tmp_path):
    from compress.config import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text("amp: bf16\nchannels_last: true\ncompile: false\ngrad_clip: 2.5\n")
    assert load_config_file(path) == {"amp": "bf16", "channels_last": True, "compile": False, "grad_clip": 2.5}
    path.write_text("amp: fp8\ngrad_clip: -1\n")
    with pytest.raises(Exception) as info:
        load_config_file(path)
    text = str(info.value)
    assert "amp: unknown value 'fp8'" in text and "grad_clip: must be >= 0" in text


BOTH_MODES = """\
rules:
  - {name: gl, penalty: group_lasso, groups: [filters, channels], strength: 0.05, layers: [0.weight], mode: penalty}
  - {name: l1c, penalty: l1, strength: 0.002, layers: [0.weight], mode: penalty}
  - {name: l1, penalty: l1, strength: 0.02, layers: [3.weight], mode: proximal}
  - {name: glp, penalty: group_lasso, groups: channels, strength: 0.05, layers: [3.weight], mode: proximal}
"""


@pytest.mark.slow
def test_compiled_hooks_do_what_the_eager_hooks_do():
    """--compile also compiles the hooks' arithmetic: the same weights (to rounding), the same exact
    zeros and the same cleared momentum as the eager hooks, over epochs whose learning rate changes
    (one graph for every rate, not one per rate) and with the rule values sampled."""
    from torch._dynamo.utils import counters

    runs = []
    for compiled in (False, True):
        model = _net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        schedule = parse_schedule(BOTH_MODES, "s.yaml")
        rules, _ = bind(schedule, model, epochs=4)
        scheduler = CompressionScheduler(rules, optimizer, schedule, value_every=2, compile_hooks=compiled)
        counters.clear()
        values = []
        for epoch in range(4):
            scheduler.on_epoch_begin(epoch)
            optimizer.param_groups[0]["lr"] = 0.1 / (epoch + 1)
            for x, y in _batches():
                values.append(_step(model, nn.CrossEntropyLoss(), optimizer, scheduler, x, y, Loop(1))[1])
        runs.append((model, optimizer, values, counters["stats"]["unique_graphs"]))
    (eager, eager_opt, eager_values, _), (compiled, compiled_opt, compiled_values, graphs) = runs
    assert 0 < graphs <= 6, f"{graphs} graphs: the hooks are recompiled per epoch"
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
        assert torch.equal(a == 0, b == 0), f"{name}: the exact zeros differ"
        assert torch.equal(eager_opt.state[a]["momentum_buffer"] == 0, compiled_opt.state[b]["momentum_buffer"] == 0)
    assert int((compiled[3].weight == 0).sum()) > 0, "the proximal steps zeroed nothing: the test shows nothing"
    assert [sorted(v) for v in eager_values] == [sorted(v) for v in compiled_values]
    for a, b in zip(eager_values, compiled_values, strict=True):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_compiled_hooks_compile_once_per_structure_not_per_rule():
    """Twelve rules, each active in one epoch, two structures (L1 on one weight or the other): the
    compiled hooks make a graph per structure (and per sampled / not sampled step), so a schedule
    that switches rules every epoch never reaches torch.compile's recompile limit (8), beyond which
    the hooks would silently fall back to eager with a long warning."""
    from torch._dynamo.utils import counters

    rules = "".join(f"  - {{name: r{e}, penalty: l1, strength: 0.001, layers: [{0 if e % 2 else 3}.weight], "
                    f"epochs: [{e}, {e + 1}], mode: penalty}}\n" for e in range(12))  # fmt: skip
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = parse_schedule("rules:\n" + rules, "s.yaml")
    bound, _ = bind(schedule, model, epochs=12)
    scheduler = CompressionScheduler(bound, optimizer, schedule, value_every=2, compile_hooks=True)
    counters.clear()
    seen = set()
    for epoch in range(12):
        scheduler.on_epoch_begin(epoch)
        for x, y in _batches(2):
            seen.update(_step(model, nn.CrossEntropyLoss(), optimizer, scheduler, x, y, Loop(1))[1])
    assert seen == {f"r{e}" for e in range(12)}, "every rule's value is reported under its own name"
    assert counters["stats"]["unique_graphs"] <= 4
