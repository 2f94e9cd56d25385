"""Tracking helpers against a real MLflow SQLite store (no mocks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import tracking
from bench.errors import TrackingError


def test_default_uri_is_absolute_sqlite_in_start_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_uri("sqlite:///rel/m.db", tmp_path) == f"sqlite:///{tmp_path}/rel/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri(None, tmp_path) == "http://127.0.0.1:5000"
    with pytest.raises(TrackingError, match="migrate-filestore"):
        tracking.resolve_uri("./mlruns", tmp_path)


def test_redaction_and_params_allowlist():
    cfg = {
        "model": {
            "name": "llm-rerank",
            "params": {
                "api_key": "sk-canary-XYZ",
                "api_key_env": "K",
                "base_url": "https://u:pw@host/v1",
            },
        },
        "tracking": {"uri": "postgresql://user:secret@db/mlflow"},
        "seed": 0,
    }
    params = tracking.params_of(cfg)
    text = repr(params)
    assert "sk-canary-XYZ" not in text and "pw@" not in text and "secret" not in text
    assert params["model.params.api_key_env"] == "K"
    assert params["model.params.base_url"] == "https://***@host/v1"
    assert not any(k.startswith("tracking") for k in params)
    long = tracking.params_of({"model": {"params": {"x": "a" * 7000}}})["model.params.x"]
    assert len(long) <= tracking.MAX_PARAM_LEN and "sha256:" in long


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True), ("apiKey", True), ("OPENAI_API_KEY", True), ("hf_token", True),
        ("authToken", True), ("token", True), ("db_password", True), ("client_secret", True),
        ("auth", True), ("session_cookie", True),
        # counts and names that merely contain a secret word are logged as they are
        ("max_new_tokens", False), ("max_tokens", False), ("n_prompt_tokens", False),
        ("author", False), ("tokenizer", False), ("authority_weight", False),
    ],
)  # fmt: skip
def test_secret_keys_are_words_not_substrings(key, secret):
    assert tracking.is_secret_key(key) is secret
    logged = tracking.params_of({"model": {"params": {key: 50}}})[f"model.params.{key}"]
    assert (logged == "***") is secret


def test_run_key_ignores_volatile_keys_only():
    base = {"model": {"name": "pop"}, "seed": 0, "tracking": {"force": False}, "progress": "auto"}
    k = tracking.run_key(base, "abc")
    assert k == tracking.run_key({**base, "tracking": {"force": True}, "progress": True}, "abc")
    assert k != tracking.run_key({**base, "seed": 1}, "abc")
    assert k != tracking.run_key(base, "abd")


def test_metric_keys_are_mlflow_safe():
    assert tracking.safe_metric_key("ndcg@10") == "ndcg_at_10"
    assert tracking.safe_metric_key("hit:5,x") == "hit_5_x"


def test_run_status_discipline_and_reaper(tmp_path):
    store = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db")
    with tracking.TrackedRun(store, "ok", {"bench.run_key": "k1"}) as run:
        run.log_metrics({"ndcg_at_10": 0.5, "nan_metric": float("nan")})
        run.log_params({"a": "1"})
    assert store.finished_run("k1").info.run_id == run.run_id
    bad = tracking.TrackedRun(store, "boom", {"bench.run_key": "k2"})
    with pytest.raises(RuntimeError), bad:
        raise RuntimeError("model exploded")
    r = store.client.get_run(bad.run_id)
    assert r.info.status == "FAILED"
    assert store.finished_run("k2") is None
    # a RUNNING run owned by a process that is gone is reaped to KILLED
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = store.client.create_run(
        store.experiment_id,
        tags={"bench.host": __import__("socket").gethostname(), "bench.pid": dead},
    )
    assert stale.info.run_id in store.reap_stale()
    assert store.client.get_run(stale.info.run_id).info.status == "KILLED"
    # our own RUNNING run is left alone
    live = tracking.TrackedRun(store, "live", {})
    assert live.run_id not in store.reap_stale()


def test_parent_run_summarises_children(tmp_path):
    store = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db")
    parent = tracking.start_parent(store, "sw1", {})
    with tracking.TrackedRun(store, "c1", {}, parent_run_id=parent):
        pass
    counts = tracking.end_parent(store, parent)
    assert counts == {"FINISHED": 1}
    p = store.client.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.tags["bench.sweep"] == "parent"


def test_network_filesystem_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "filesystem_type", lambda p: "nfs4")
    with pytest.raises(TrackingError, match="network filesystem \\(nfs4\\)"):
        tracking.check_location(f"sqlite:///{tmp_path}/mlflow.db")
    tracking.check_location(f"sqlite:///{tmp_path}/mlflow.db", allow_network_fs=True)


def test_measurement_settings_are_not_part_of_a_configuration():
    """metrics.*, latency.*, device, eval.ks and eval.batch_budget_mb change what is
    measured, not the recommendations: same config_key, different run_key."""
    from bench.tracking import config_key, identity_param, run_key

    base = {"model": {"name": "pop", "params": {}}, "seed": 0, "device": "cpu",
            "eval": {"ks": [5, 10], "users": "warm", "batch_budget_mb": 256},
            "metrics": {"item_embeddings": None}, "latency": {"mode": "default"}}
    other = {**base, "metrics": {"item_embeddings": {"encoder": "", "template": "{title}"}},
             "latency": {"mode": "disabled"}, "device": "cuda",
             "eval": {**base["eval"], "ks": [10], "batch_budget_mb": 64}}
    assert config_key(base, "s") == config_key(other, "s")
    assert run_key(base, "s") != run_key(other, "s")
    changed = {**base, "eval": {**base["eval"], "users": "all"}}
    assert config_key(base, "s") != config_key(changed, "s")
    assert [identity_param(p) for p in ("model.params.k", "eval.users", "eval.ks", "seed",
                                        "metrics.item_embeddings", "latency.mode", "device")] \
        == [True, True, False, False, False, False, False]


# -- new SQLite stores are copied from the empty store this MLflow made once --------------------


def _schema(db) -> tuple[set, list]:
    """(table and index names, alembic revision) of a SQLite store."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        names = set(con.execute("select type, name from sqlite_master"))
        return names, list(con.execute("select version_num from alembic_version"))
    finally:
        con.close()


def test_a_new_store_is_a_copy_of_the_migrated_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_HOME", str(tmp_path / "cache"))
    tracking.Store(f"sqlite:///{tmp_path}/a/mlflow.db")  # migrations run, their result is kept
    template = tracking.schema_template()
    assert template is not None and template.parent.parent == tmp_path / "cache"
    assert template.is_file()

    def no_migrations(tmp):
        raise AssertionError("migrations ran although the empty store is cached")

    monkeypatch.setattr(tracking, "_migrate_sqlite_store", no_migrations)
    b = tracking.Store(f"sqlite:///{tmp_path}/b/mlflow.db")
    run = b.client.create_run(b.experiment_id)
    b.client.log_metric(run.info.run_id, "ndcg_at_10", 0.5)
    b.client.set_terminated(run.info.run_id)
    assert [r.info.status for r in b.search("")] == ["FINISHED"]

    monkeypatch.undo()
    monkeypatch.setenv("BENCH_CACHE_HOME", "off")
    assert tracking.schema_template() is None
    tracking.Store(f"sqlite:///{tmp_path}/c/mlflow.db")  # migrated here, no cache
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "c" / "mlflow.db")
    assert _schema(template) == _schema(tmp_path / "c" / "mlflow.db")


def test_a_damaged_or_unwritable_cache_never_fails_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_HOME", str(tmp_path / "cache"))
    template = tracking.schema_template()
    assert template is not None
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database " * 100)
    migrated = []
    real = tracking._migrate_sqlite_store
    monkeypatch.setattr(tracking, "_migrate_sqlite_store", lambda t: (migrated.append(t), real(t)))
    tracking.Store(f"sqlite:///{tmp_path}/a/mlflow.db")
    assert len(migrated) == 1  # the junk was not copied: migrations ran ...
    assert tracking._read_template(template) is not None  # ... and replaced it
    for damage in (b"", template.read_bytes()[:20_000]):  # empty, truncated
        template.write_bytes(damage)
        assert tracking._read_template(template) is None

    (tmp_path / "file").write_text("a file where the cache folder would be")
    monkeypatch.setenv("BENCH_CACHE_HOME", str(tmp_path / "file"))
    s = tracking.Store(f"sqlite:///{tmp_path}/b/mlflow.db")
    assert s.search("") == [] and len(migrated) == 2


def test_the_cached_store_is_named_by_the_versions_that_made_it(tmp_path, monkeypatch):
    import importlib.metadata

    monkeypatch.setenv("BENCH_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    now = tracking.schema_template()
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: "0.0.1" if d == "mlflow" else real(d)
    )
    assert tracking.schema_template() not in (None, now)
    monkeypatch.undo()
    monkeypatch.delenv("BENCH_CACHE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tracking.cache_home() == tmp_path / "xdg" / "bench"

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(tracking.Path, "home", staticmethod(no_home))
    assert tracking.cache_home() is None and tracking.schema_template() is None
    assert tracking.Store(f"sqlite:///{tmp_path}/s/mlflow.db").search("") == []
