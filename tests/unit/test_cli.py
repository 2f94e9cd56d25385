"""CLI: fast help without heavy imports, one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cli import check_overrides, main
from bench.errors import ConfigError

HEAVY = ("torch", "transformers", "recbole", "mlflow", "ranx", "numba")


def test_help_imports_nothing_heavy_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); from bench.cli import main; main(['--help']);"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: bench <command>" in out.stdout


def test_console_script_help_under_1_5_s():
    exe = __import__("shutil").which("bench")
    if exe is None:
        pytest.skip("console script not installed (pip install -e .)")
    best = min(_timed([exe, "--help"]) for _ in range(3))
    assert best < 1.5, f"bench --help took {best:.2f} s"


def test_output_into_a_closed_pipe_gives_no_traceback():
    """`bench --help | head -1`: the reader closes the pipe before the help is written."""
    code = "from bench.cli import main; import sys; sys.exit(main(['--help']))"
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write raises BrokenPipeError
    proc = subprocess.run([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 1


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t


@pytest.mark.parametrize(
    "arg, expected",
    [
        (
            "model=sasrecc",
            "unknown model 'sasrecc' in override 'model=sasrecc' (did you mean 'sasrec'?)",
        ),
        ("dataset=ml-100", "(did you mean 'ml-100k'?)"),
        ("split=temporal", "(did you mean 'temporal-global'?)"),
        ("model=pop,eas", "unknown model 'eas'"),
    ],
)
def test_unknown_group_options_have_did_you_mean(arg, expected):
    with pytest.raises(ConfigError) as e:
        check_overrides([arg])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_command_exits_2(capsys):
    assert main(["lederboard"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'leaderboard'" in err


def test_run_with_unknown_model_exits_2_without_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "model=sasrecc"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0
    assert "did you mean 'sasrec'" in out.stderr


def test_model_params_become_force_overrides_after_validation():
    from bench.cli import model_param_overrides

    out = model_param_overrides(["-m", "model=bpr,sasrec", "model.params.epochs=2"])
    assert out == ["-m", "model=bpr,sasrec", "++model.params.epochs=2"]
    with pytest.raises(ConfigError, match="unknown parameter 'epoch' for model 'bpr'"):
        model_param_overrides(["model=bpr,sasrec", "model.params.epoch=2"])


def test_misspelled_top_level_key_has_did_you_mean():
    with pytest.raises(ConfigError) as e:
        check_overrides(["modle=ease"])
    msg = str(e.value)
    assert "unknown config key 'modle' in override 'modle=ease' (did you mean 'model'?)" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=r"to add a new key, write \+zzz=1"):
        check_overrides(["zzz=1"])


def test_sweep_seeds_are_checked_before_any_job(tmp_path):
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0, got 'x' in override "
                                          r"'seed=0,x' \(e.g. seed=0, or seed=0,1,2 in a sweep\)"):
        check_overrides(["-m", "seed=0,x"])
    check_overrides(["-m", "seed=0,1,2"])
    check_overrides(["-m", "seed=range(0,3)"])
    out = subprocess.run([sys.executable, "-m", "bench", "run", "-m", "seed=0,abc"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "mlflow.db").exists()


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
    ],
)  # fmt: skip
def test_bad_values_in_any_sweep_job_are_one_line_before_the_sweep(argv, expected):
    from bench.cli import check_sweep_values

    with pytest.raises(ConfigError) as e:
        check_sweep_values(argv)
    assert str(e.value) == expected


def test_valid_sweeps_and_single_runs_pass_the_sweep_check_quickly():
    from bench.cli import check_sweep_values

    t = time.perf_counter()
    check_sweep_values(["-m", "model=pop,random,ease,itemknn", "seed=range(0,25)"])
    check_sweep_values(["model=pop", "eval.ks=[0]"])  # one run: bench.app checks it (exit 2)
    check_sweep_values(["-m", "model=pop", "no_such_key=1"])  # left to Hydra's own error
    # 100 jobs compose once per model (seed does not change eval or latency)
    assert time.perf_counter() - t < 5


def test_bad_sweep_value_creates_no_run(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "-m", "model=pop,random", "eval.ks=[0,5]"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "sweep job #0" in out.stderr
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
    with pytest.raises(ConfigError) as e:
        check_overrides([arg])
    assert expected in str(e.value) and "\n" not in str(e.value)


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
        ["split=loo-last,temporal-global", "split.valid_fraction=0.1", "eval.ks=[5]"],
        ["split.valid_fraction=0.2"],
        ["paths.root=/tmp/x"],
        ["experiment=quickstart"],
        ["report.out=/tmp/r", "progress=false", "dataset=synthetic", "split=loo-last"],
        ["-m", "hydra/launcher=basic", "hydra.launcher.n_jobs=4", "model=pop,ease", "seed=0,1"],
        ["+newkey=1", "++model.params.k=3", "~report.spec"],
        ["--config-name", "other", "whatever=1"],
    ],
)
def test_documented_overrides_pass_the_key_check(args):
    check_overrides(args)


def test_documented_overrides_compose():
    """The keys the check lets through really compose in Hydra (``--cfg job``: no run)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--cfg", "job", "model=itemknn",
         "model.params.k=100", "eval.ks=[10,50]", "seed=1", "device=auto",
         "split.valid_fraction=0.2", "tracking.force=true", "latency=sweep",
         "latency.fresh_process=true",
         "metrics.item_embeddings={encoder: '', template: '{title} ({year})'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "k: 100" in out.stdout and "- 50" in out.stdout and "valid_fraction: 0.2" in out.stdout


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
