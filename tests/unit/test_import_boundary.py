"""The harness imports nothing from the models: ``bench/`` never imports ``baselines``.

Models plug into the harness (registry, ``bench.item_text`` encoders) by name; an import the
other way would make the harness know one model family. Checked on the source with ``ast``,
so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
FORBIDDEN = "baselines"


def _is_forbidden(module: str | None) -> bool:
    return module is not None and (module == FORBIDDEN or module.startswith(f"{FORBIDDEN}."))


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of ``baselines`` in ``source``: ``import``, ``from ...
    import`` and ``importlib.import_module`` / ``__import__`` of a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_forbidden(node.module):
            found.append((node.lineno, str(node.module)))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _is_forbidden(arg.value)
            ):
                found.append((node.lineno, arg.value))
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import baselines", [(1, "baselines")]),
        ("import os, baselines.llm.common as c", [(1, "baselines.llm.common")]),
        ("def f():\n    from baselines.llm import encoder", [(2, "baselines.llm")]),
        ("import importlib\nimportlib.import_module('baselines.llm')", [(2, "baselines.llm")]),
        ("__import__('baselines')", [(1, "baselines")]),
        ("import baselines_extra\nfrom . import baselines", []),
        ("raise ValueError('put it under baselines/')", []),
    ],
)
def test_the_checker_finds_every_kind_of_import(source, expected):
    assert forbidden_imports(source) == expected


def test_bench_imports_nothing_from_baselines():
    files = sorted(BENCH.rglob("*.py"))
    assert len(files) > 20
    offenders = [
        f"{path.relative_to(BENCH.parent)}:{line}: {module}"
        for path in files
        for line, module in forbidden_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_shipped_test_kit_needs_pytest_only_when_asked_for():
    """``bench.testing`` ships the conformance kit for plugin authors; importing the package
    (for ``tiny_split``) must not need pytest, which is no dependency of ``bench``."""
    code = (
        "import sys, bench.testing; bench.testing.tiny_split(n_users=5, n_items=9, n_events=40); "
        "assert 'pytest' not in sys.modules, 'pytest imported'; "
        "from bench.testing import ModelConformance; assert 'pytest' in sys.modules"
    )
    env_root = str(BENCH.parent)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=env_root, timeout=300
    )
    assert done.returncode == 0, done.stderr
