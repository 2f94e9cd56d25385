"""The one atomic writer (bench.files): modes, nothing half written, nothing lost on failure,
and what happens to a folder already at the target (keep, swap, merge)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bench.files import write_atomically, write_folder_atomically


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def fail(tmp: Path) -> None:
    (tmp / "half").write_text("x")
    raise RuntimeError("boom")


def test_a_file_gets_opens_mode_and_replaces_the_old_one(tmp_path, umask_027):
    target = tmp_path / "f.txt"
    target.write_text("old")
    write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and mode(target) == 0o640
    assert siblings(target) == ["f.txt"]


def test_a_failed_file_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, half)
    assert target.read_text() == "old" and siblings(target) == ["f.txt"]


def test_a_new_folder_gets_mkdirs_mode_and_its_parents(tmp_path, umask_027):
    target = tmp_path / "a" / "b" / "split"
    assert write_folder_atomically(target, lambda tmp: (tmp / "x").write_text("1"))
    assert (target / "x").read_text() == "1" and mode(target) == 0o750
    assert siblings(target) == ["split"]


def test_a_failed_folder_write_leaves_nothing(tmp_path):
    target = tmp_path / "split"
    with pytest.raises(RuntimeError):
        write_folder_atomically(target, fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", ["keep", "swap", "merge"])
def test_a_failed_write_never_touches_an_existing_folder(tmp_path, existing):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("kept")
    with pytest.raises(RuntimeError):
        write_folder_atomically(target, fail, existing=existing)
    assert [p.name for p in target.iterdir()] == ["old"] and siblings(target) == ["out"]


def test_keep_leaves_a_folder_another_process_made_first(tmp_path):
    target = tmp_path / "split"

    def race(tmp: Path) -> None:
        (tmp / "ours").write_text("1")
        target.mkdir()
        (target / "theirs").write_text("2")

    assert write_folder_atomically(target, race) is False
    assert [p.name for p in target.iterdir()] == ["theirs"] and siblings(target) == ["split"]


def test_swap_replaces_the_old_folder_only_when_the_new_one_is_complete(tmp_path, umask_027):
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.md").write_text("old")
    os.chmod(target, 0o700)

    def write(tmp: Path) -> None:
        assert (target / "old.md").exists()  # still there while the new one is written
        (tmp / "new.md").write_text("new")

    assert write_folder_atomically(target, write, existing="swap")
    assert [p.name for p in target.iterdir()] == ["new.md"] and mode(target) == 0o750
    assert siblings(target) == ["report"]


def test_merge_keeps_other_entries_and_renames_the_lock_last(tmp_path, monkeypatch):
    target = tmp_path / "ml-1m"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "stale").write_text("s")
    (target / "README").write_text("user's")
    order: list[str] = []
    real = os.replace

    def spy(src, dst):
        order.append(Path(dst).name)
        return real(src, dst)

    def write(tmp: Path) -> None:
        (tmp / "bench-lock.json").write_text("{}")
        (tmp / "ratings.dat").write_text("r")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "fresh").write_text("f")

    monkeypatch.setattr(os, "replace", spy)
    write_folder_atomically(target, write, existing="merge", last={"bench-lock.json"})
    monkeypatch.undo()
    assert order[-1] == "bench-lock.json"
    assert sorted(p.name for p in target.iterdir()) == ["README", "bench-lock.json",
                                                          "ratings.dat", "sub"]
    assert [p.name for p in (target / "sub").iterdir()] == ["fresh"]
    assert siblings(target) == ["ml-1m"]


def test_an_unknown_policy_is_refused_before_any_io(tmp_path):
    with pytest.raises(ValueError, match="keep, swap, merge"):
        write_folder_atomically(tmp_path / "x", fail, existing="overwrite")
    assert list(tmp_path.iterdir()) == []
