"""``compress plot RUN`` and the plots written at the end of a run."""

from __future__ import annotations

from pathlib import Path

from compress import groups as G
from compress.artifacts import RunArtifacts, load_artifacts, model_from, read_sparsity_history
from compress.errors import CompressError
from compress.plots import plot_accuracy_sparsity, plot_group_norms, plot_layer_heatmap
from compress.schedule import parse_schedule
from compress.scheduler import match_parameters
from compress.sparsity import reported_parameters


def _rules(artifacts: RunArtifacts):
    return parse_schedule(artifacts.state["schedule_text"], artifacts.state["schedule_source"]).rules


def layer_groups(artifacts: RunArtifacts) -> dict[str, str]:
    """For each reported weight, the group its rules act on (the first grouped rule wins), else
    filters; 1-D weights that a rule touches are shown element-wise."""
    state_dict = artifacts.state["state_dict"]
    names = list(state_dict)
    chosen: dict[str, str] = {}
    for rule in _rules(artifacts):
        for target in rule.targets:
            for name in match_parameters(target.pattern, names):
                group = next((g for g in target.groups if g != "elements"), "elements")
                if chosen.get(name, "elements") == "elements":
                    chosen[name] = group
    out = {}
    for name, _ in reported_parameters(model_from(artifacts), extra=chosen):
        group = chosen.get(name) or ("filters" if state_dict[name].dim() >= 2 else "elements")
        if G.get(group).misfit(tuple(state_dict[name].shape)) is None:
            out[name] = group
    return out


def plot_run(path: Path, group: str = "filters") -> list[Path]:
    artifacts = load_artifacts(path, "RUN")
    if artifacts.run_dir is None or not artifacts.history:
        raise CompressError(f"RUN: {path} is not a run directory with metrics.csv")
    run_dir = artifacts.run_dir
    epochs = [h["epoch"] for h in artifacts.history]
    rule_epochs = {r.name: [e for e in epochs if r.epochs.active(e)] for r in _rules(artifacts)}
    written = [plot_accuracy_sparsity(artifacts.history, rule_epochs, run_dir / "accuracy_sparsity.png")]
    sparsity_history = read_sparsity_history(run_dir)
    if sparsity_history:
        written.append(plot_layer_heatmap(sparsity_history, group, run_dir / "layer_sparsity.png"))
    groups = layer_groups(artifacts)
    weights = {name: artifacts.state["state_dict"][name] for name in groups}
    written.append(plot_group_norms(weights, groups, run_dir / "group_norms.png"))
    return written
