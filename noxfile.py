"""Developer sessions. They run in the current environment (the project's venv from the README
Quickstart), so no session downloads a second torch: `nox -s tests lint typecheck perf`."""

from __future__ import annotations

import glob

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (the README's second command runs the same pytest)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def fast(session: nox.Session) -> None:
    """Tests without the slow end-to-end ones."""
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Only the slow/integration tests (real MLflow, RecBole, transformers, Hydra multirun)."""
    session.run("python", "-m", "pytest", "-m", "slow or integration", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", "bench", "baselines", "tests", "benchmarks", "noxfile.py")
    session.run("yamllint", "-d", "{extends: relaxed, rules: {line-length: {max: 100}}}", "conf")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.run("mypy", "bench")


@nox.session
def perf(session: nox.Session) -> None:
    """Benchmarks against peers measured in the same run; results go to reports/perf/."""
    scripts = sorted(glob.glob("benchmarks/perf_*.py"))
    for script in scripts:
        session.run("python", script, "--out", "reports/perf", *session.posargs)
