"""``bench``: run | leaderboard | report | evaluate | data.

This module imports only the standard library at start-up: ``bench --help`` never loads torch,
transformers, recbole or mlflow.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from bench import __version__
from bench.errors import BenchError

HELP = f"""usage: bench <command> [options]

Reproducible benchmarks of LLM-based and classical recommenders (llmrec-harness {__version__}).

commands:
  run [overrides]      one experiment, Hydra-composed: bench run model=ease dataset=ml-100k
  run -m [overrides]   a sweep (Hydra multirun):      bench run -m model=pop,ease seed=0,1,2
  leaderboard          rank the MLflow runs of one dataset+split by a metric
  report               paper tables (LaTeX/Markdown/CSV), figures and provenance.json from MLflow
  evaluate             score an external recommendation file against a materialized split
  data                 datasets: list | info <id> | fetch <id> | verify <id>
  tune model=a,b,...   equal-budget tuning on validation, then the best configs on test

`bench <command> --help` describes each command; `bench run --help` shows the config groups.
Errors in your input print one line and exit with code 2 (BENCH_TRACEBACK=1 shows tracebacks).
"""

def cmd_run(argv: list[str]) -> int:
    from bench.app import main as app_main
    from bench.config import check_run

    return app_main(check_run(argv))


def cmd_leaderboard(argv: list[str]) -> int:
    from bench.report.leaderboard import leaderboard_main

    return int(leaderboard_main(argv) or 0)


def cmd_report(argv: list[str]) -> int:
    from bench.report.build import report_main

    return int(report_main(argv) or 0)


def cmd_evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="bench evaluate",
        description="Score an external recommendation file (parquet, csv or tsv with user_id, "
        "item_id, rank[, score]) against a materialized split folder, with the same metrics a "
        "run logs. Items in the user's train or valid set are counted as misses; the file is "
        "checked for them and a warning on stderr says how many.",
    )
    p.add_argument("--split", required=True, help="split folder (holds manifest.json)")
    p.add_argument("--recommendations", "-r", required=True, help="recommendations file")
    p.add_argument("--ks", default="5,10,20", help="cut-offs, comma-separated (default 5,10,20)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--users",
        choices=("warm", "all", "cold"),
        default="warm",
        help="the test users the metrics average over, as bench run's eval.users: warm "
        "(default: with train interactions), all, or cold (without)",
    )
    p.add_argument(
        "--per-user",
        metavar="FILE",
        help="write the per-user metrics to this parquet file (a new file: an existing one is "
        "replaced only with --force; never inside a split folder)",
    )
    p.add_argument(
        "--force", action="store_true", help="let --per-user replace an existing file"
    )
    a = p.parse_args(argv)
    import json
    import warnings

    import polars as pl

    from bench import evaluate
    from bench.errors import DataError
    from bench.metrics.api import SeenItemsWarning
    from bench.splits import load_split

    split = load_split(a.split)
    path = Path(a.recommendations)
    if not path.is_file():
        raise DataError(f"{path}: no such recommendations file")
    try:
        ks = tuple(int(k) for k in a.ks.split(","))
    except ValueError as e:
        raise DataError(f"--ks {a.ks!r}: expected comma-separated integers, e.g. 5,10,20") from e
    per_user = check_per_user(Path(a.per_user), path, a.force) if a.per_user else None
    recs = read_recommendations(path)
    warn_long_ks(recs, ks, path)
    seen = pl.concat(
        [split.train.select("user_id", "item_id"), split.valid.select("user_id", "item_id")]
    )
    check_users_match(recs, split, path)
    test, left_out = population_of(split, a.users)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeenItemsWarning)  # said below, naming the file
            ev = evaluate(
                recs,
                test,
                train=split.train,
                items=split.items,
                users=split.users,
                ks=ks,
                seen=seen,
            )
    except DataError as e:
        if str(e).startswith("recommendations"):  # name the file: ties, ranks < 1, nulls
            raise DataError(f"{path}: {e}") from e
        raise
    # users without test items, as a run counts them (not the other segment's users)
    ev.summary["n_users_skipped"] -= left_out
    n_seen = ev.n_seen_recommended
    if n_seen:
        print(
            f"warning: {path}: {n_seen} of {recs.height} recommendations "
            f"({100 * n_seen / recs.height:.1f}%) are items the user already has in train or "
            f"valid; they are kept and count as misses (a split holds each user-item pair once), "
            f"whereas bench run leaves them out of its lists (eval.exclude_seen=true, the default)",
            file=sys.stderr,
        )
    if per_user is not None:
        from bench.files import write_atomically

        write_atomically(per_user, ev.per_user.write_parquet)
    if a.format == "json":
        print(json.dumps(ev.summary, indent=2, sort_keys=True))
    elif a.format == "csv":
        print("metric,value")
        for k in sorted(ev.summary):
            print(f"{k},{ev.summary[k]:.10g}")
    else:
        print_summary(ev.summary)
    # on stderr in every format: stdout stays machine-readable for json/csv
    for metric, reason in getattr(ev, "skipped", []) or []:
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    return 0


def print_summary(summary: dict[str, float]) -> None:
    """The headline keys first, by metric group in catalog order (accuracy, beyond accuracy,
    data), each metric's cut-offs together; then the breakdowns (``/`` keys) under a rule."""
    from bench.metrics import catalog

    order = {s.name: i for i, s in enumerate(catalog.specs())}

    def rank(key: str) -> tuple:
        try:
            spec, k, suffix = catalog.parse_key(key)
            return (bool(suffix) or "/" in key, order.get(spec.name, 99), k or 0, key)
        except BenchError:
            return ("/" in key, 100, 0, key)

    keys = sorted(summary, key=rank)
    width = max((len(k) for k in keys if "/" not in k), default=10)
    head = [k for k in keys if "/" not in k]
    for k in head:
        print(f"{k:<{width}}  {summary[k]:.6f}")
    rest = keys[len(head):]
    if rest:
        print(f"-- breakdowns ({len(rest)}: per user group and gap) --")
        for k in rest:
            print(f"{k}  {summary[k]:.6f}")


def check_users_match(recs, split, path: Path) -> None:
    """A file none of whose users is a test user of the split scores 0 everywhere: that is a
    wrong split or another id scheme, never a result (DataError naming both sides)."""
    from bench.errors import DataError

    file_users = recs["user_id"].cast(str).unique()
    test_users = split.test["user_id"].unique()
    if file_users.is_in(test_users.implode()).any():
        return
    import polars as pl

    everyone = pl.concat([split.train["user_id"], split.valid["user_id"], split.test["user_id"]])
    known = int(file_users.is_in(everyone.unique().implode()).sum())
    raise DataError(
        f"{path}: none of its {file_users.len()} users is a test user of the split "
        f"{split.path} ({known} are users of the split at all; e.g. {file_users[0]!r} in the "
        f"file, {test_users.sort()[0]!r} in the split): is it the right split, and are the ids "
        f"the dataset's own user ids?"
    )


def population_of(split, users: str):
    """The split's test rows of the ``--users`` population (warm: users with train
    interactions), said on stderr with its size and the other segment's; and the number of test
    users left out."""
    import polars as pl

    in_train = pl.col("user_id").is_in(split.train["user_id"].unique().implode())
    warm = split.test.filter(in_train)
    n_warm, n_all = warm["user_id"].n_unique(), split.test["user_id"].n_unique()
    test = {"warm": warm, "all": split.test, "cold": split.test.filter(~in_train)}[users]
    sizes = {"warm": f"{n_warm}; {n_all - n_warm} cold users not evaluated",
             "cold": f"{n_all - n_warm}; {n_warm} warm users not evaluated",
             "all": f"{n_all}: {n_warm} warm, {n_all - n_warm} cold"}[users]
    print(f"evaluated: {users} test users (n = {sizes}; --users chooses)", file=sys.stderr)
    if test.is_empty() and n_all:
        print(f"warning: no {users} test user in {split.path}: no metric can be computed; "
              "--users all evaluates every test user", file=sys.stderr)
    return test, n_all - test["user_id"].n_unique()


def cmd_tune(argv: list[str]) -> int:
    from bench.tuning import tune_main

    return tune_main(argv)


def cmd_data(argv: list[str]) -> int:
    from bench.data.commands import data_main

    return data_main(argv)


def check_per_user(out: Path, recs: Path, force: bool) -> Path:
    """The resolved ``--per-user`` target, checked before any work: never a folder, a file
    inside a split folder or the recommendations file; an existing file only with --force."""
    from bench.errors import DataError
    from bench.splits import split_folder_holding

    target = out.resolve()
    if target.is_dir():
        raise DataError(
            f"--per-user {out} is a folder; give a file name, e.g. {out / 'per_user.parquet'}"
        )
    split = split_folder_holding(target.parent)
    if split is not None:
        raise DataError(
            f"--per-user {out} is inside the split folder {split}, which bench never writes "
            f"to (it would corrupt the split); give a path outside it"
        )
    if target == recs.resolve():
        raise DataError(f"--per-user {out} is the --recommendations file; give another file name")
    if not target.parent.is_dir():
        raise DataError(
            f"--per-user {out}: folder {target.parent} does not exist; create it or give "
            f"another path"
        )
    if target.exists() and not force:
        raise DataError(
            f"--per-user {out} already exists; give a new file name, or add --force to replace it"
        )
    return target


def warn_long_ks(recs, ks: tuple[int, ...], path: Path) -> None:
    """One warning line when a cut-off exceeds the longest list of the file: its metrics are
    computed on the shorter lists as they are (e.g. @50 on top-20 lists equals @20 for most)."""
    if recs.height == 0:
        return
    longest = int(recs.group_by("user_id").len()["len"].max())
    over = [str(k) for k in dict.fromkeys(ks) if k > longest]
    if over:
        ats = [f"@{k}" for k in over]
        at = ats[0] if len(ats) == 1 else f"{', '.join(ats[:-1])} and {ats[-1]}"
        print(
            f"warning: {path}: its longest list has {longest} items, fewer than k = "
            f"{', '.join(over)} of --ks; the metrics {at} use the shorter lists as they are "
            f"(no items are added)",
            file=sys.stderr,
        )


REC_COLUMNS = ("user_id", "item_id", "rank")
REC_FORMATS = (
    "a parquet, csv or tsv (.tsv: tab-separated) file with columns user_id, item_id, rank[, score]"
)


def read_recommendations(path: Path):
    """The recommendations file as a polars frame: parquet by its suffix (``.parquet``/``.pq``),
    tab-separated for ``.tsv``, else csv. Unreadable files and missing columns are DataErrors
    naming the file and what is expected."""
    import polars as pl

    from bench.errors import DataError

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            recs = pl.read_parquet(path)
        else:
            recs = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",")
    except Exception as e:  # polars ComputeError/NoDataError, OSError, decoding errors
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"{path}: not a readable recommendations table ({reason}); expected {REC_FORMATS}"
        ) from e
    renamed = (re.fullmatch(r"(.+)_duplicated_\d+", c) for c in recs.columns)
    dup = sorted({m.group(1) for m in renamed if m})
    if dup:  # polars renames a repeated column name instead of refusing it
        raise DataError(
            f"{path}: column {dup[0]!r} appears more than once in the header; keep one "
            f"(expected {REC_FORMATS})"
        )
    missing = [c for c in REC_COLUMNS if c not in recs.columns]
    if missing:
        # escaped and cut: a binary file's "column names" hold control characters
        cols = [c.encode("unicode_escape").decode()[:40] for c in recs.columns[:8]]
        shown = ", ".join(cols) + (", ..." if recs.width > 8 else "")
        raise DataError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} (columns: {shown or 'none'}"
            f"); expected {REC_FORMATS}"
        )
    if recs.height == 0:
        raise DataError(
            f"{path}: no recommendations (the file has a header but 0 rows); expected "
            f"{REC_FORMATS}, one row per recommended item"
        )
    if recs["rank"].dtype == pl.Utf8 and (recs["rank"] == "rank").any():
        row = int((recs["rank"] == "rank").arg_true()[0]) + 2
        raise DataError(
            f"{path}: line {row} repeats the header (files concatenated with their headers?); "
            f"keep the first header only"
        )
    if not recs["rank"].dtype.is_integer():
        raise DataError(
            f"{path}: column 'rank' must hold integers (1-based), got {recs['rank'].dtype}; "
            f"expected {REC_FORMATS}"
        )
    return recs


COMMANDS = {
    "run": cmd_run,
    "leaderboard": cmd_leaderboard,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "data": cmd_data,
    "tune": cmd_tune,
}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: a running run is already marked KILLED by tracking
        if os.environ.get("BENCH_TRACEBACK"):
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output stopped early (`bench ... | head`)
        # no traceback, and no second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"llmrec-harness {__version__}")
        return 0
    cmd = COMMANDS.get(argv[0])
    try:
        if cmd is None:
            from bench.errors import unknown

            raise unknown("command", argv[0], COMMANDS)
        return cmd(argv[1:])
    except Exception as e:
        from bench.errors import BenchError

        if not isinstance(e, BenchError) or os.environ.get("BENCH_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
