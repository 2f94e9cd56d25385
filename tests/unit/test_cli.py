"""CLI: fast help without heavy imports, one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cli import main
from bench.config import check_run
from bench.errors import ConfigError

# bench/cli.py imports the standard library only at start-up: not even Hydra
HEAVY = ("torch", "transformers", "recbole", "mlflow", "ranx", "numba", "hydra", "omegaconf",
         "yaml", "numpy", "polars")


def test_help_imports_nothing_heavy():
    """What start-up costs is measured in `nox -s perf` (benchmarks/perf_startup.py)."""
    code = (
        "import sys; from bench.cli import main; main(['--help']);"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: bench <command>" in out.stdout


def test_output_into_a_closed_pipe_gives_no_traceback():
    """`bench --help | head -1`: the reader closes the pipe before the help is written."""
    code = "from bench.cli import main; import sys; sys.exit(main(['--help']))"
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write raises BrokenPipeError
    proc = subprocess.run([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 1


def _error(argv: list[str]) -> str:
    """The one-line error ``bench run <argv>`` gives before Hydra starts (in-process)."""
    with pytest.raises(ConfigError) as e:
        check_run(argv)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["model=sasrecc"],
         "unknown model 'sasrecc' in override 'model=sasrecc' (did you mean 'sasrec'?)"),
        (["dataset=ml-100"], "(did you mean 'ml-100k'?)"),
        (["split=temporal"], "(did you mean 'temporal-global'?)"),
        (["-m", "model=pop,eas"], "unknown model 'eas' in override 'model=pop,eas'"),
        (["experiment=quickstrat"], "unknown experiment 'quickstrat'"),
    ],
)  # fmt: skip
def test_unknown_group_options_have_did_you_mean(argv, expected):
    msg = _error(argv)
    assert expected in msg and "base_" not in msg  # the schemas are no group's options


def test_unknown_command_exits_2(capsys):
    assert main(["lederboard"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'leaderboard'" in err


def test_run_with_unknown_model_exits_2_with_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_TRACEBACK", raising=False)
    assert main(["run", "model=sasrecc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'sasrecc'") and err.count("\n") == 1
    assert "did you mean 'sasrec'" in err


def test_model_params_become_force_overrides_after_validation():
    out = check_run(["-m", "model=bpr,sasrec", "model.params.epochs=2"])
    assert out == ["-m", "model=bpr,sasrec", "++model.params.epochs=2"]
    with pytest.raises(ConfigError, match="unknown parameter 'epoch' for model 'bpr'"):
        check_run(["-m", "model=bpr,sasrec", "model.params.epoch=2"])


def test_misspelled_top_level_key_has_did_you_mean():
    msg = _error(["modle=ease"])
    assert "unknown config key 'modle' in override 'modle=ease' (did you mean 'model'?)" in msg
    assert r"to add a new key, write +zzz=1" in _error(["zzz=1"])


def test_sweep_seeds_are_checked_before_any_job():
    # the message names the job, like every bad value of a sweep (it named the override)
    assert _error(["-m", "seed=0,x"]) == (
        "seed must be an integer >= 0, got 'x' (e.g. seed=0); sweep job #1: seed=x")
    check_run(["-m", "seed=0,1,2"])
    check_run(["-m", "seed=range(0,3)"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-m", "model=pop,random", "eval.ks=[0,5]"], "eval.ks must be a non-empty list of "
         "positive integers, got [0, 5] (e.g. eval.ks=[10,20]); sweep job #0: model=pop "
         "eval.ks=[0,5]"),
        # the config's own sweep (hydra.sweeper.params) makes it a sweep without -m
        (["experiment=quickstart", "eval.batch_budget_mb=-1"], "eval.batch_budget_mb must be a "
         "number > 0 (MB), got -1 (e.g. eval.batch_budget_mb=256); sweep job #0: model=pop "
         "experiment=quickstart eval.batch_budget_mb=-1"),
        # sweeper functions are expanded: job #3 is the first with seed -1
        (["-m", "model=pop,random", "seed=range(2,-2,-1)", "latency.n_requests=5"],
         "seed must be an integer >= 0, got -1 (e.g. seed=0); sweep job #3: model=pop "
         "seed=-1 latency.n_requests=5"),
        (["-m", "model=pop", "latency.n_requests=5,0"], "latency.n_requests must be an integer "
         ">= 1, got 0; sweep job #1: model=pop latency.n_requests=0"),
        # a value every job has is not any one job's fault
        (["-m", "seed=0,1", "split.seed=x"], "split.seed must be an integer >= 0, got 'x' in "
         "override 'split.seed=x' (e.g. split.seed=0)"),
    ],
)  # fmt: skip
def test_bad_values_in_any_sweep_job_are_one_line_before_the_sweep(argv, expected):
    assert _error(argv) == expected


def test_a_sweep_composes_once_per_job_that_differs_in_more_than_its_seed(monkeypatch):
    import bench.config.composition as composing

    calls = []
    real = composing.hydra_compose

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(composing, "hydra_compose", counted)
    check_run(["-m", "model=pop,random,ease,itemknn", "seed=range(0,25)"])
    assert len(calls) == 1 + 4  # the base config, then one per model for its 25 seeds


def test_single_runs_and_bad_keys_in_sweeps_are_checked_before_hydra():
    assert _error(["model=pop", "eval.ks=[0]"]).startswith("eval.ks must be a non-empty list")
    assert "unknown config key 'no_such_key'" in _error(["-m", "model=pop", "no_such_key=1"])
    # Hydra's "Ambiguous value" block, as one line
    assert "add --multirun" in _error(["model=pop,ease"])


def test_sweep_jobs_are_numbered_as_hydras_basic_sweeper_numbers_them():
    """Differential check against Hydra's own split (a test may import Hydra's internals; the
    harness does not)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bench.config import sweep_jobs

    args = ["model=pop,random", "seed=range(0,3)", "eval.ks=[5,10]", "model=ease,pop",
            "+x=choice(a,b)", "hydra/launcher=joblib"]
    parsed = OverridesParser.create().parse_overrides(args)
    assert sweep_jobs(parsed) == BasicSweeper.split_arguments(parsed, None)[0]


def test_hydra_errors_become_one_line_config_errors():
    from hydra.errors import ConfigCompositionException

    from bench.config import explain
    from bench.errors import DataError

    same = DataError("x")
    assert explain(same) is same
    err = explain(ConfigCompositionException("Could not do it.\nTry this."))
    assert isinstance(err, ConfigError) and str(err) == "config: Could not do it.; Try this."
    assert "is not valid override syntax" in _error(["seed=[1"])
    assert "does not support deletion" in _error(["~dataset.manifest"])


def test_bad_sweep_value_exits_2_with_one_line_and_creates_nothing(tmp_path):
    """The one subprocess test of the exit code: the messages are tested in-process above."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "-m", "model=pop,random", "eval.ks=[0,5]"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "BENCH_TRACEBACK": "", "HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: eval.ks must be") and "sweep job #0" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("eval.kss=[10]", "unknown config key 'eval.kss' in override 'eval.kss=[10]' (did you "
         "mean 'ks'?); eval has: batch_budget_mb, candidates, early_stopping_metric"),
        ("latency.n_request=3", "(did you mean 'n_requests'?)"),
        ("tracking.forc=true", "(did you mean 'force'?)"),
        ("metrics.item_embeddings.encoder=x", "metrics.item_embeddings is null in the chosen "
         "config, so it has no keys to set; set it whole"),
    ],
)  # fmt: skip
def test_misspelled_nested_keys_are_one_line_with_did_you_mean(arg, expected):
    assert expected in _error([arg])


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("seed=abc", "seed must be an integer >= 0, got 'abc' in override 'seed=abc' (e.g. "
         "seed=0)"),
        ("eval.ks=[10,abc]", "eval.ks must be a non-empty list of positive integers, got "
         "[10, 'abc'] in override 'eval.ks=[10,abc]' (e.g. eval.ks=[10,20])"),
        ("eval.exclude_seen=maybe", "eval.exclude_seen must be true or false (it is logged, "
         "never defaulted), got 'maybe' in override 'eval.exclude_seen=maybe'"),
        ("split.valid_fraction=abc", "split.valid_fraction must be a number, got 'abc' in "
         "override 'split.valid_fraction=abc' (e.g. split.valid_fraction=0.1)"),
        ("dataset.relevance_threshold=x", "dataset.relevance_threshold must be a number or "
         "null, got 'x' in override 'dataset.relevance_threshold=x'"),
    ],
)  # fmt: skip
def test_values_of_the_wrong_type_read_like_values_out_of_range(arg, expected):
    assert _error([arg]) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["seed=1"],
        ["eval.ks=[10,50]"],
        ["model=itemknn", "model.params.k=100"],
        ["device=auto"],
        ["latency=sweep", "latency.fresh_process=true"],
        ["tracking.force=true"],
        ["experiment=quickstart", "metrics.item_embeddings.encoder=/some/folder"],
        ["metrics.item_embeddings={encoder: x, template: '{title}'}"],
        ["-m", "split=loo-last,temporal-global", "split.valid_fraction=0.1", "eval.ks=[5]"],
        ["split.valid_fraction=0.2"],
        ["paths.root=/tmp/x"],
        ["report.out=/tmp/r", "progress=false", "dataset=synthetic", "split=loo-last"],
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "model=pop,ease", "seed=0,1"],
        ["+newkey=1", "model=itemknn", "++model.params.k=3"],
        ["--config-name", "other", "whatever=1"],
    ],
)
def test_documented_overrides_pass_the_checks(args):
    check_run(args)


def test_documented_overrides_compose():
    """What the checks let through composes to the values asked for."""
    from bench.config import compose, hydra_context

    argv = check_run(
        ["model=itemknn", "model.params.k=100", "eval.ks=[10,50]", "seed=1", "device=auto",
         "split.valid_fraction=0.2", "tracking.force=true", "latency=sweep",
         "latency.fresh_process=true",
         "metrics.item_embeddings={encoder: '', template: '{title} ({year})'}"])
    with hydra_context():
        cfg = compose(argv)
    assert cfg.model.params.k == 100 and list(cfg.eval.ks) == [10, 50]
    assert cfg.split.valid_fraction == 0.2 and cfg.latency.mode == "sweep"
    assert cfg.metrics.item_embeddings.template == "{title} ({year})"


def test_unimportable_registry_entry_is_one_line(monkeypatch, capsys):
    from bench.models import registry

    table = {**registry._builtin(), "pop": "mypkg_not_here.module:MyModel"}
    monkeypatch.setattr(registry, "_builtin", lambda: table)
    with pytest.raises(ConfigError) as e:
        registry.get("pop")
    msg = str(e.value)
    assert "model 'pop'" in msg and "'mypkg_not_here.module:MyModel'" in msg
    assert "no module named 'mypkg_not_here'" in msg and "PYTHONPATH" in msg and "\n" not in msg
    # through the CLI (model.params are validated before Hydra runs): exit 2, one line
    assert main(["run", "model=pop", "model.params.k=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'pop'") and err.count("\n") == 1


def test_registry_entry_with_a_missing_class_is_one_line(monkeypatch):
    from bench.models import registry

    monkeypatch.setitem(registry._EXTRA, "mymodel", "bench.errors:ConfigErorr")
    with pytest.raises(ConfigError) as e:
        registry.build("mymodel", {})
    msg = str(e.value)
    assert "model 'mymodel'" in msg and "'bench.errors' has no attribute 'ConfigErorr'" in msg
    assert "did you mean 'ConfigError'" in msg and "\n" not in msg


def test_registry_entry_with_a_missing_dependency_names_it(monkeypatch, tmp_path):
    from bench.models import registry

    (tmp_path / "needs_dep_mod.py").write_text("import some_missing_dep_xyz\nclass M: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._EXTRA, "depmodel", "needs_dep_mod:M")
    with pytest.raises(ConfigError, match="needs the module 'some_missing_dep_xyz'"):
        registry.get("depmodel")


def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, capsys):
    import bench.cli as cli

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.delenv("BENCH_TRACEBACK", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "leaderboard", interrupted)
    assert main(["leaderboard"]) == 130
    err = capsys.readouterr().err
    assert err == "interrupted\n"


def test_evaluate_help_documents_force_for_per_user(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--per-user FILE" in out and "replaced only with --force" in out
    assert "never inside a split folder" in out
    assert "--force let --per-user replace an existing file" in out


def test_evaluate_table_puts_headline_keys_first(capsys):
    """bench evaluate printed ~280 alphabetical lines with nDCG buried among breakdowns."""
    from bench.cli import print_summary

    summary = {"ndcg_at_10/gender/F": 0.2, "aplt_at_10": 0.1, "ndcg_at_10": 0.3,
               "precision_at_5": 0.4, "precision_at_10": 0.5, "n_users_evaluated": 10.0}
    print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys[:3] == ["precision_at_5", "precision_at_10", "ndcg_at_10"]
    assert keys.index("aplt_at_10") < keys.index("n_users_evaluated")
    assert lines[-2].startswith("-- breakdowns (1") and keys[-1] == "ndcg_at_10/gender/F"
