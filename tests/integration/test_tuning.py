"""``bench tune``: equal budgets, validation-only trials, final runs = the best trial's config,
resume after SIGKILL, bad search spaces, ``--tuned`` leaderboards and reports. Real Hydra
composition, real MLflow and Optuna stores, small synthetic data."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from bench import tracking
from bench.cli import main as cli_main

from .conftest import SMALL_DATA, bench

pytestmark = [pytest.mark.integration]

DATA = [*SMALL_DATA, "latency=disabled"]
TEST_PREFIXES = ("ndcg_at", "recall_at", "precision_at", "hit_rate_at", "mrr_at", "map_at",
                 "coverage_at", "novelty_at", "latency_", "throughput", "n_users_evaluated")


def all_runs(root: Path) -> list:
    return tracking.Store(f"sqlite:///{root}/mlflow.db").search("", max_results=5000)


def role(runs: list, name: str) -> list:
    return [r for r in runs if r.data.tags.get("bench.tuning.role") == name]


def studies(root: Path) -> dict:
    import optuna

    url = f"sqlite:///{root}/optuna.db"
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=url)
            for s in optuna.get_all_study_summaries(url)}


def states(study) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """pop, itemknn, ease tuned with 3 trials each, finals on seeds 0 and 1."""
    root = tmp_path_factory.mktemp("tune")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["tune", "model=pop,itemknn,ease", *DATA, "tuning.trials=3", "tuning.seeds=[0,1]"]
    assert cli_main(argv) == 0
    yield root, argv
    mp.undo()


def test_every_study_has_the_same_number_of_finished_trials(tuned):
    root, _ = tuned
    by_model = {name.split("-")[0]: s for name, s in studies(root).items()}
    assert sorted(by_model) == ["ease", "itemknn", "pop"]
    assert states(by_model["itemknn"]) == states(by_model["ease"]) == ["COMPLETE"] * 3
    assert states(by_model["pop"]) == ["COMPLETE"]  # no hyper-parameters: one trial
    finals = role(all_runs(root), "final")
    assert {(r.data.tags["bench.model"], r.data.tags["bench.tuning.trials"]) for r in finals} == {
        ("pop", "1"), ("itemknn", "3"), ("ease", "3")}
    assert {r.data.tags["bench.tuning.budget"] for r in finals} == {"trials=3"}


def test_trials_log_no_test_metric_and_no_test_artifact(tuned):
    root, _ = tuned
    store = tracking.Store(f"sqlite:///{root}/mlflow.db")
    trials = role(all_runs(root), "trial")
    assert len(trials) == 7
    for r in trials:
        assert r.info.status == "FINISHED"
        keys = set(r.data.metrics)
        assert "valid/ndcg_at_10" in keys
        assert not [k for k in keys if k.startswith(TEST_PREFIXES)], keys
        arts = {a.path for a in store.client.list_artifacts(r.info.run_id)}
        assert arts == {"config.yaml", "environment.json"}
        parent = store.client.get_run(r.data.tags["mlflow.parentRunId"])
        assert parent.data.tags["bench.tuning.role"] == "study"
        assert parent.info.status == "FINISHED"


def test_final_runs_are_exactly_the_best_trials_configuration(tuned):
    root, _ = tuned
    runs = all_runs(root)
    trials = role(runs, "trial")
    for model in ("itemknn", "ease"):
        own = [t for t in trials if t.data.tags["bench.model"] == model]
        best = max(own, key=lambda t: t.data.metrics["valid/ndcg_at_10"])
        finals = [r for r in role(runs, "final") if r.data.tags["bench.model"] == model]
        assert sorted(r.data.tags["bench.seed"] for r in finals) == ["0", "1"]
        for r in finals:
            assert r.data.tags["bench.tuning.best_trial"] == best.data.tags["bench.tuning.trial"]
            assert r.data.tags["bench.tuning.study"] == best.data.tags["bench.tuning.study"]
            params = {k: v for k, v in r.data.params.items() if k != "seed"}
            assert params == {k: v for k, v in best.data.params.items() if k != "seed"}
            assert "ndcg_at_10" in r.data.metrics and "latency_p50_ms" not in r.data.metrics


def test_rerunning_the_command_resumes_and_duplicates_nothing(tuned, capsys):
    root, argv = tuned
    before = sorted(r.info.run_id for r in all_runs(root))
    assert cli_main(argv) == 0
    assert sorted(r.info.run_id for r in all_runs(root)) == before
    out = capsys.readouterr()
    assert "resuming with 3 finished trials" in out.err
    # the command ends with the tuned leaderboard of its own studies
    assert "Tuned on validation with an equal budget per model (trials=3" in out.out
    assert {"pop", "itemknn", "ease"} <= set(out.out.split())


def test_tuned_leaderboard_and_report_state_the_budget(tuned, capsys):
    from bench.report.build import report_main
    from bench.report.leaderboard import leaderboard_main

    root, _ = tuned
    uri = f"sqlite:///{root}/mlflow.db"
    assert leaderboard_main(["--tuned", "--tracking-uri", uri, "--format", "md"]) == 0
    out = capsys.readouterr()
    assert {"pop", "itemknn", "ease"} <= {line.split("|")[2].strip()
                                          for line in out.out.splitlines()[2:]}
    assert leaderboard_main(["--tuned", "--tracking-uri", uri]) == 0
    text = capsys.readouterr().out
    assert "equal budget per model (trials=3; finished trials: ease 3, itemknn 3, pop 1" in text
    assert "objective valid/ndcg_at_10" in text and "conf/search/" in text
    assert report_main(["--tuned", "--tracking-uri", uri, "--out", str(root / "rep")]) == 0
    md = (root / "rep" / "table.md").read_text()
    assert "trials=3" in md and "conf/search/" in md
    assert (root / "rep" / "tuning_progress.png").is_file()
    prov = json.loads((root / "rep" / "provenance.json").read_text())
    assert all(r["run_id"] in {x.info.run_id for x in role(all_runs(root), "final")}
               for r in prov["runs"])


def test_plain_leaderboard_never_shows_trials(tuned, capsys):
    from bench.report.leaderboard import leaderboard_main

    root, _ = tuned
    assert leaderboard_main(["--tracking-uri", f"sqlite:///{root}/mlflow.db", "--format",
                             "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    # one row per final configuration: no trial (no ndcg_at_10) reaches a leaderboard
    assert len(rows) == 3 and all(row.split(",")[2] for row in rows)


def test_tuning_progress_is_the_running_best():
    from bench.report.figures import best_so_far, tuning_progress

    assert best_so_far([0.1, 0.3, 0.2, 0.4]) == [0.1, 0.3, 0.3, 0.4]
    fig, reason = tuning_progress({"ease": [0.1, 0.3, 0.2], "pop": [0.2]}, "valid/ndcg_at_10")
    assert reason is None
    lines = {ln.get_gid(): list(ln.get_ydata()) for ln in fig.axes[0].get_lines()}
    assert lines == {"ease": [0.1, 0.3, 0.3], "pop": [0.2]}


BAD_SPACES = {
    "unknown parameter": ("params: {kk: {type: int, low: 5, high: 50}}", "params.kk"),
    "empty range": ("params: {k: {type: int, low: 50, high: 5}}", "params.k: empty range"),
    "wrong type": ("params: {k: {type: float, low: 5.0, high: 50.0}}", "params.k"),
    "bad type name": ("params: {k: {type: integer, low: 5, high: 50}}", "params.k.type"),
    "no source": ("params: {k: {type: int, low: 5, high: 50}}", "source"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_a_bad_search_space_is_one_line_and_exit_2_before_any_trial(
        case, tmp_path, monkeypatch, capsys):
    text, expected = BAD_SPACES[case]
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    source = "" if case == "no source" else "source: test\n"
    (spaces / "itemknn.yaml").write_text(source + text + "\n")
    (spaces / "pop.yaml").write_text("source: none\nparams: {}\n")
    monkeypatch.chdir(tmp_path)
    code = cli_main(["tune", "model=pop,itemknn", *DATA, f"tuning.search_dir={spaces}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert str(spaces / "itemknn.yaml") in err and expected in err
    assert not (tmp_path / "mlflow.db").exists() or not all_runs(tmp_path)


def test_a_model_without_search_space_and_a_test_objective_are_refused(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["tune", "model=recbole", *DATA]) == 2
    assert "model 'recbole' has no search space" in capsys.readouterr().err
    assert cli_main(["tune", "model=pop", *DATA, "tuning.metric=ndcg_at_10"]) == 2
    assert "must be a validation metric" in capsys.readouterr().err


def test_sigkill_mid_trial_then_the_same_command_continues_to_the_budget(tmp_path):
    args = ("tune", "model=itemknn", *DATA, "tuning.trials=3", "tuning.seeds=[0]")
    killed = bench(  # the tune smoke test: a new interpreter
        *args, cwd=tmp_path, check=False, env={"BENCH_TUNE_SIGKILL_AT_TRIAL": "1"}, fresh=True
    )
    assert killed.returncode == -signal.SIGKILL
    assert [r.info.status for r in role(all_runs(tmp_path), "trial")].count("RUNNING") == 1
    (study,) = studies(tmp_path).values()
    assert states(study) == ["COMPLETE", "RUNNING"]

    bench(*args, cwd=tmp_path)
    (study,) = studies(tmp_path).values()
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    trials = sorted(study.trials, key=lambda t: t.number)
    assert trials[1].params == trials[2].params  # the killed trial is asked again, not lost
    runs = all_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    statuses = sorted(r.info.status for r in role(runs, "trial"))
    assert statuses == ["FINISHED", "FINISHED", "FINISHED", "KILLED"]
    finished = [r for r in role(runs, "trial") if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["bench.tuning.trial"]) for r in finished) == [0, 2, 3]
    assert len(role(runs, "final")) == 1 and len(role(runs, "study")) == 1


def test_budget_counts_finished_trials_and_their_time():
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from bench.tuning import TuningConfig, budget_left
    from bench.tuning_space import Param, SearchSpace

    def cfg(trials, seconds):
        raw = {"trials": trials, "time_budget_s": seconds, "seeds": [0]}
        return TuningConfig.from_mapping(raw, [10])

    t0 = datetime(2026, 1, 1)
    done = [SimpleNamespace(datetime_start=t0, datetime_complete=t0 + timedelta(seconds=40))] * 2
    space = SearchSpace("ease", Path("ease.yaml"), "s", (Param("l2", "float", 1.0, 2.0),))
    empty = SearchSpace("pop", Path("pop.yaml"), "s", ())
    assert budget_left(cfg(3, None), space, done) and not budget_left(cfg(2, None), space, done)
    assert budget_left(cfg(None, 81), space, done) and not budget_left(cfg(None, 80), space, done)
    assert not budget_left(cfg(10, 1000), space, [*done] * 5)
    assert budget_left(cfg(3, None), empty, []) and not budget_left(cfg(3, None), empty, done[:1])
    assert cfg(20, 600).budget == "trials=20,time=600s" and cfg(None, 60).budget == "time=60s"
    with pytest.raises(Exception, match="both null"):
        cfg(None, None)


def test_tuned_comparisons_refuse_mixed_budgets_and_keep_the_latest_study():
    from bench.report.runs import ReportError, Run, tuned_only, tuning_caption

    def run(rid, model, study, budget, start, role="final"):
        tags = {"bench.model": model, "bench.dataset": "d", "bench.split": "s",
                "bench.tuning.role": role, "bench.tuning.study": study,
                "bench.tuning.budget": budget, "bench.tuning.metric": "valid/ndcg_at_10",
                "bench.tuning.sampler": "tpe seed 0", "bench.tuning.trials": "5"}
        return Run(rid, rid, start, tags, {})

    runs = [run("a", "ease", "old", "trials=5", 1), run("b", "ease", "new", "trials=5", 2),
            run("c", "pop", "p", "trials=5", 1), run("t", "ease", "new", "trials=5", 3, "trial")]
    assert sorted(r.run_id for r in tuned_only(runs)) == ["b", "c"]
    assert "equal budget per model (trials=5; finished trials: ease 5, pop 5)" in \
        tuning_caption(tuned_only(runs))
    with pytest.raises(ReportError, match="different tuning budgets"):
        tuning_caption([runs[1], run("d", "pop", "p2", "trials=9", 4)])
