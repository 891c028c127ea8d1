"""``compress tune``: search paths and values on both schedule formats, the search dimensions and
their checks, the Pareto front, the sampler's seed; end to end on mnist5k with tiny trials (a
study, its files, resume, --jobs 2, early stopping, one-line errors, and Optuna missing)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from compress.errors import CompressError
from compress.schedule import parse_schedule
from compress.tuning.document import ScheduleDocument
from compress.tuning.front import Point, choose, pareto_front
from compress.tuning.measure import Measures
from compress.tuning.space import parse_search, parse_searches, short_names

ROOT = Path(__file__).resolve().parent.parent
FILTERS = ROOT / "schedules/lenet5-filters.yaml"
TINY = ("--epochs", "2", "--limit-batches", "2", "--no-plots", "--no-progress")
CONV1 = "conv-filters.layers.conv1.weight"
CONV2 = "conv-filters.layers.conv2.weight"


def _doc(name: str) -> ScheduleDocument:
    return ScheduleDocument.read(ROOT / "schedules" / name)


# --- paths and values ---------------------------------------------------------------------------


def test_native_paths_name_rules_and_keys_and_values_replace_only_those_numbers(tmp_path):
    doc = _doc("lenet5-hybrid.yaml")
    assert doc.leaf(CONV1).value == 0.5
    assert doc.leaf("conv-filters.epochs.1").value == 6
    assert doc.leaf("fc-agp.sparsity.to").value == 0.9
    assert doc.leaf("rules.1.sparsity.to").node is doc.leaf("fc-agp.sparsity.to").node  # also from the top
    assert doc.leaf("lr_scheduler.gamma").value == 0.1
    text = doc.with_values({CONV1: 1.5e-05, "conv-filters.epochs.1": 4, "fc-agp.sparsity.to": 0.75})
    changed = [(a, b) for a, b in zip(doc.text.splitlines(), text.splitlines(), strict=True) if a != b]
    assert [b for _, b in changed] == [
        f"config: {(ROOT / 'configs/lenet5-ssl.yaml').resolve()}",
        "    layers: {conv1.weight: 1.5e-05, conv2.weight: 0.6}",
        "    epochs: [0, 4]",
        "    sparsity: {from: 0.1, to: 0.75}",
    ]
    schedule = parse_schedule(text, str(tmp_path / "copy.yaml"))  # the copy reads anywhere: config is absolute
    rule = schedule.rules[0]
    assert [t.strength for t in rule.targets] == [1.5e-05, 0.6] and rule.epochs.end == 4
    assert schedule.config == str((ROOT / "configs/lenet5-ssl.yaml").resolve())


def test_distiller_paths_start_at_the_instance_name():
    doc = _doc("resnet20-cifar10-distiller.yaml")
    path = "block_filters.reg_regims.module.layer1.0.conv1.weight.0"  # a parameter name's dots are one key
    assert doc.leaf(path).value == 0.0008
    assert doc.leaf("training_lr.gamma").value == 0.1
    assert doc.leaf("policies.0.ending_epoch").value == 100
    schedule = parse_schedule(doc.with_values({path: 0.002}), "copy.yaml")
    strengths = {t.pattern: t.strength for rule in schedule.rules for t in rule.targets}
    assert strengths["module.layer1.0.conv1.weight"] == 0.002
    assert strengths["module.layer1.1.conv1.weight"] == 0.0008
    agp = _doc("lenet5-agp-distiller.yaml")
    assert agp.leaf("fc_pruner.final_sparsity").value == 0.85
    parse_schedule(agp.with_values({"fc_pruner.final_sparsity": 0.6, "conv_filters.final_sparsity": 0.3}), "x.yaml")


def test_a_path_that_names_nothing_lists_what_exists():
    with pytest.raises(CompressError) as info:
        _doc("lenet5-filters.yaml").leaf("conv-filters.strength")
    message = str(info.value)
    assert "\n" not in message and "--search conv-filters.strength: names nothing in" in message
    assert f"its numbers: {CONV1}, {CONV2}, conv-filters.epochs.0, conv-filters.epochs.1," in message
    with pytest.raises(CompressError, match=r"did you mean 'conv-filters.layers.conv1.weight'"):
        _doc("lenet5-filters.yaml").leaf("conv-filters.layers.conv1.wieght")


def test_a_value_behind_a_yaml_alias_is_refused():
    text = "s: &s 0.5\nrules:\n  - {name: r, penalty: l1, strength: *s, layers: ['*.weight']}\n"
    with pytest.raises(CompressError, match="shared through a YAML alias"):
        ScheduleDocument(text, "a.yaml").leaf("r.strength")


# --- search dimensions --------------------------------------------------------------------------


def test_search_specs_ranges_and_choices():
    doc = _doc("lenet5-filters.yaml")
    dim = parse_search(f"{CONV1}=1e-3:1:log", doc)
    assert (dim.kind, dim.low, dim.high, dim.log, dim.start()) == ("float", 1e-3, 1, True, 0.5)
    epochs = parse_search("conv-filters.epochs.1=8:20:int", doc)
    assert (epochs.kind, epochs.start()) == ("int", 8)  # the schedule's 6, brought into the range
    choice = parse_search("conv-filters.mode=proximal,penalty", doc)
    assert (choice.kind, choice.choices, choice.start()) == ("choice", ("proximal", "penalty"), "proximal")
    assert parse_search("conv-filters.epochs.1=4,6,8", doc).choices == (4, 6, 8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"{CONV1}=1:0.1", "the low end must be below the high end"),
        (f"{CONV1}=0.5:0.5", "the low end must be below the high end"),
        (f"{CONV1}=0:1:log", "a log range needs a low end above 0"),
        (f"{CONV1}=a:1", "'a' is not a finite number"),
        (f"{CONV1}=0:nan", "'nan' is not a finite number"),
        (f"{CONV1}=0:1:cubic", "expected LOW:HIGH, LOW:HIGH:log"),
        (f"{CONV1}", "expected PATH=LOW:HIGH"),
        ("conv-filters.epochs.1=2:9", "is an integer in the schedule (6); add :int"),
        ("conv-filters.epochs.1=2:9.5:int", "an :int range needs integer ends"),
        ("conv-filters.mode=0:1", "holds 'proximal', not a number"),
        ("conv-filters.epochs.1=4,4", "a choice is given twice"),
        ("conv-filters.layers=0:1", "names nothing"),
    ],
)
def test_bad_search_specs_are_one_line_errors(spec, message):
    with pytest.raises(CompressError) as info:
        parse_search(spec, _doc("lenet5-filters.yaml"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_path_searched_twice_and_no_search_are_errors():
    doc = _doc("lenet5-filters.yaml")
    with pytest.raises(CompressError, match="searched twice"):
        parse_searches([f"{CONV1}=0.1:1", f"{CONV1}=0.2:1"], doc)
    with pytest.raises(CompressError, match="give at least one"):
        parse_searches([], doc)


def test_short_names_keep_two_parts_and_stay_unique():
    paths = [CONV1, CONV2, "conv-filters.epochs.1", "fc-agp.epochs.1", "conv-filters.strength"]
    assert short_names(paths) == {
        CONV1: "conv1.weight",
        CONV2: "conv2.weight",
        "conv-filters.epochs.1": "conv-filters.epochs.1",
        "fc-agp.epochs.1": "fc-agp.epochs.1",
        "conv-filters.strength": "strength",
    }


# --- the front and the engine -------------------------------------------------------------------


def _point(number: int, top1: float, filters: float, stopped: str | None = None) -> Point:
    m = Measures(top1, filters, 0.0, 0.0, 0, 580, 1, 1, 1, 1)
    return Point(number, {CONV1: 0.1 * number}, m, f"trials/{number:03d}", stopped)


def test_the_front_is_the_non_dominated_feasible_finished_trials():
    points = [_point(0, 97.0, 5.0), _point(1, 96.0, 10.0), _point(2, 95.0, 9.0), _point(3, 98.0, 1.0),
              _point(4, 96.0, 10.0), _point(5, 99.0, 50.0, stopped="early"), _point(6, 90.0, 40.0)]  # fmt: skip
    front = pareto_front(points, "filters", None)
    assert [p.number for p in front] == [3, 0, 1, 6]  # 2 is dominated by 1, 4 repeats 1, 5 stopped early
    assert choose(front, "filters", None).number == 0  # the sparsest within 1 point of the best top1 (98)
    constrained = pareto_front(points, "filters", 96.0)
    assert [p.number for p in constrained] == [3, 0, 1]
    assert choose(constrained, "filters", 96.0).number == 1
    assert choose([], "filters", None) is None


def test_the_same_seed_gives_the_same_trials_and_workers_differ():
    from compress.config import RunConfig
    from compress.tuning.engine import make_sampler, require_optuna
    from compress.tuning.setup import TuneSetup

    optuna = require_optuna()
    doc = _doc("lenet5-filters.yaml")
    dims = parse_searches([f"{CONV1}=1e-3:1:log", "conv-filters.epochs.1=2:9:int"], doc)
    setup = TuneSetup(str(FILTERS), doc.text, dims, RunConfig(seed=3), "filters", None, 2.0, 9, 1, Path("x"), "x")

    def sequence(worker: int) -> list[tuple]:
        study = optuna.create_study(directions=["maximize", "maximize"],
                                    sampler=make_sampler(setup, existing=0, worker=worker))  # fmt: skip
        study.optimize(lambda t: (sum(d.suggest(t) for d in dims), 1.0), n_trials=6)
        return [tuple(t.params.values()) for t in study.trials]

    assert sequence(0) == sequence(0)
    assert sequence(0) != sequence(1)


# --- end to end ---------------------------------------------------------------------------------


def _tune(cli, study: Path, *args: object):
    return cli("tune", "--schedule", FILTERS, "--search", f"{CONV1}=0.01:1:log", "--search", f"{CONV2}=0.01:1:log",
               "--study-dir", study, *TINY, *args)  # fmt: skip


def _trials(study: Path) -> list:
    import optuna

    return optuna.load_study(study_name=study.name, storage=f"sqlite:///{study / 'study.db'}").get_trials()


@pytest.mark.slow
def test_a_study_writes_its_front_and_ready_to_run_schedules(cli, tmp_path):
    study = tmp_path / "lenet5"
    result = _tune(cli, study, "--trials", "4", "--plots")
    assert result.exit_code == 0, result.output
    out = result.output
    assert sum(line.startswith("trial ") for line in out.splitlines()) == 4
    assert "trial 0  conv1.weight=0.5  conv2.weight=0.6  top1" in out and "(the schedule as written)" in out
    assert "4 trials: 4 complete, 0 stopped early, 0 failed" in out and "Pareto front (" in out
    rows = list(csv.DictReader(open(study / "pareto.csv", encoding="utf-8")))
    assert rows and {CONV1, CONV2, "top1", "filters_zero_pct", "macs_thinned", "run_dir"} <= set(rows[0])
    for row in rows:
        assert (Path(row["run_dir"]) / "best.pt").exists() and Path(row["schedule"]).exists()
    best = sorted((study / "best").glob("trial-*.yaml"))
    assert len(best) == len(rows) and (study / "pareto.png").exists()
    assert best[0].read_text().startswith(f"# compress tune: trial {int(rows[0]['trial'])} of study lenet5")
    for path in best:
        checked = cli("check", "--schedule", path)
        assert checked.exit_code == 0 and "OK: 1 rule(s)" in checked.output
    assert f"train the chosen one longer: compress train --schedule {study / 'best'}/trial-" in out
    assert "--epochs 20" in out and "--limit-batches" not in out.split("train the chosen one longer")[1]
    trial = study / "trials/000"
    assert {"best.pt", "checkpoint.pt", "metrics.csv", "summary.json", "schedule-lenet5-filters.yaml"} <= \
        {p.name for p in trial.iterdir()}  # fmt: skip
    assert cli("report", trial).exit_code == 0  # a trial is a run like any other
    again = _tune(cli, study, "--trials", "4")
    assert again.exit_code == 2 and "already holds a study; add --resume" in again.output


@pytest.mark.slow
def test_resume_keeps_finished_trials_and_fails_the_one_a_crash_left_running(cli, tmp_path):
    import optuna

    study = tmp_path / "s"
    assert _tune(cli, study, "--trials", "2").exit_code == 0
    stamps = {p: p.stat().st_mtime_ns for p in study.glob("trials/*/best.pt")}
    crashed = optuna.load_study(study_name="s", storage=f"sqlite:///{study / 'study.db'}")
    crashed.ask()  # a trial whose process was killed: RUNNING forever
    result = _tune(cli, study, "--trials", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert "trial 2 was running when the study stopped: marked failed" in result.output
    assert "2 of 4 trials done" in result.output
    finished = [line.split()[1] for line in result.output.splitlines() if line.startswith("trial ") and "top1" in line]
    assert finished == ["3", "4"]  # 0 and 1 are not run again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    states = [t.state.name for t in _trials(study)]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    done = _tune(cli, study, "--trials", "4", "--resume")
    assert done.exit_code == 0 and "4 of 4 trials done" in done.output and "\ntrial " not in done.output


@pytest.mark.slow
def test_two_worker_processes_share_the_study(cli, tmp_path):
    study = tmp_path / "jobs"
    result = _tune(cli, study, "--trials", "2", "--jobs", "2")
    assert result.exit_code == 0, result.output
    numbers = sorted(int(line.split()[1]) for line in result.output.splitlines() if line.startswith("trial "))
    assert numbers == [0, 1]
    assert all(t.state.name == "COMPLETE" for t in _trials(study))
    assert len({tuple(t.params.values()) for t in _trials(study)}) == len(_trials(study))  # no two alike


@pytest.mark.slow
def test_invalid_values_fail_the_trial_and_low_top1_stops_it_early(cli, tmp_path):
    result = cli("tune", "--schedule", FILTERS, "--search", "conv-filters.epochs.0=7,8", "--study-dir",
                 tmp_path / "bad", "--trials", "1", *TINY)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trial 0  epochs.0=7  failed: " in result.output and "inverted epoch range [7, 6)" in result.output
    assert "1 trial: 0 complete, 0 stopped early, 1 failed" in result.output
    assert (tmp_path / "bad/trials/000/error.txt").exists()
    # regularization in epoch 0 only: judged after 2 of 3 epochs (half the run, and one epoch to settle)
    stopped = cli("tune", "--schedule", FILTERS, "--search", "conv-filters.epochs.1=1,2", "--study-dir",
                  tmp_path / "stop", "--trials", "1", "--min-top1", "99", "--stop-margin", "0", *TINY,
                  "--epochs", "3")  # fmt: skip
    assert stopped.exit_code == 0, stopped.output
    assert "stopped early: best top1" in stopped.output and "< 99 - 0 after 2 epochs" in stopped.output
    assert "none reached --min-top1 99" in stopped.output
    assert len((tmp_path / "stop/trials/000/metrics.csv").read_text().splitlines()) == 3  # header and 2 epochs
    assert [t.state.name for t in _trials(tmp_path / "stop")] == ["PRUNED"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--search", "conv-filters.strength=1e-3:1:log"), "--search conv-filters.strength: names nothing in"),
        (("--search", f"{CONV1}=1:0.5"), "the low end must be below the high end"),
        (("--search", f"{CONV1}=0:1:log"), "a log range needs a low end above 0"),
        (("--search", "conv-filters.epochs.1=2:9.5:int"), "an :int range needs integer ends"),
        (("--search", f"{CONV1}=0.1:1", "--objective", "top1,flops"), "--objective: unknown 'top1,flops'"),
        (("--search", f"{CONV1}=0.1:1", "--min-top1", "101"), "--min-top1: a top1 in percent"),
        (("--search", f"{CONV1}=0.1:1", "--resume"), "holds no study.db to continue"),
        (("--search", f"{CONV1}=0.1:1", "--name", "x"), "--name: every trial runs in STUDY_DIR/trials/NNN"),
        ((), "--search: give at least one"),
    ],
)
def test_bad_arguments_are_one_line_errors(cli, tmp_path, args, message):
    result = cli("tune", "--schedule", FILTERS, "--study-dir", tmp_path / "s", *TINY, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_without_optuna_tune_is_a_one_line_install_hint(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = _tune(cli, tmp_path / "s", "--trials", "1")
    assert result.exit_code == 2
    hint = 'compress tune needs Optuna: pip install -e ".[tune]" (or pip install optuna)'
    assert result.output.strip() == f"error: {hint}"


def test_early_stopping_waits_for_half_the_run_and_the_rules_to_end():
    from compress.tuning.trial import StopRule

    schedule = parse_schedule(FILTERS.read_text(), str(FILTERS))  # regularizes epochs 0-5
    rule = StopRule.for_schedule(schedule, 97.0, 2.0, 10)
    assert rule.earliest == 7  # 6 epochs of regularization, and one to settle
    assert not rule.should_stop(5, 50.0) and rule.should_stop(6, 94.9) and not rule.should_stop(6, 95.0)
    assert not rule.should_stop(9, 10.0)  # the last epoch: the run is finished anyway
    assert StopRule.for_schedule(schedule, 97.0, 2.0, 30).earliest == 15
    assert not StopRule.for_schedule(schedule, None, 2.0, 30).should_stop(20, 0.0)


def test_the_other_workers_start_only_when_the_enqueued_trial_is_taken():
    """SQLite lets two processes pop one enqueued trial (both then train trial 0 into one directory):
    the first worker starts alone and the others wait until no trial waits, or it has died."""
    from compress.tuning.workers import start_after_the_queue

    events = []

    class Proc:
        def __init__(self, name, alive=True):
            self.name, self.alive = name, alive

        def start(self):
            events.append(f"start {self.name}")

        def is_alive(self):
            return self.alive

    polls = iter([True, True, False])  # the enqueued trial is taken at the third look

    def waiting():
        events.append("look")
        return next(polls)

    start_after_the_queue([Proc(1), Proc(2), Proc(3)], waiting, poll_s=0)
    assert events == ["start 1", "look", "look", "look", "start 2", "start 3"]
    events.clear()
    start_after_the_queue([Proc(1, alive=False), Proc(2)], lambda: True, poll_s=0)  # a dead first worker
    assert events == ["start 1", "start 2"]
