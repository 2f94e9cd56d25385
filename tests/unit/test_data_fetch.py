"""Fetching datasets (bench.data.fetch) against a 127.0.0.1 server with fixture archives in each
source's real format: success, checksum mismatches, resume, 404, redirects, path traversal,
lock files, offline messages, and the `bench data` commands."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from bench.cli import main as cli_main
from bench.data import datasets as D
from bench.data import fetch as F
from bench.data.contract import DatasetWarning
from bench.errors import DataError
from tests.unit.fetch_fixtures import (
    FileServer,
    amazon_meta,
    amazon_reviews,
    jsonl_gz,
    md5_sidecar,
    mind_zip,
    ml100k_zip,
    ml_csv_zip,
    zip_bytes,
)

REPO = Path(__file__).resolve().parents[2]
GL = "https://files.grouplens.org/datasets/movielens"
AMZ = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    with FileServer() as s:
        monkeypatch.setenv("BENCH_DATA_MIRROR", s.mirror)
        yield s


def serve_grouplens(server: FileServer, name: str, body: bytes, md5_of: bytes | None = None):
    server.put(f"{GL}/{name}", body)
    server.put(f"{GL}/{name}.md5", md5_sidecar(name, body if md5_of is None else md5_of))


def load(name: str, root: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # fixture counts differ from the release
        return D.load_dataset({"name": name, "data_root": str(root), **kw})


def leftovers(root: Path) -> list[str]:
    """Anything but the dataset folders and the (empty-able) downloads lock files."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith((".tmp", ".part")) or ".tmp" in p.name
    )


# --------------------------------------------------------------------------------------------
# success, lock file, later use


def test_first_use_fetches_verifies_md5_unpacks_and_loads(server, tmp_path, capsys):
    serve_grouplens(server, "ml-100k.zip", ml100k_zip())
    ds = load("ml-100k-grouplens", tmp_path)
    assert ds.counts() == {"interactions": 5, "users": 3, "items": 3}
    assert ds.items.filter(ds.items["item_id"] == "3")["title"][0] == "Café au lait"
    folder = tmp_path / "ml-100k-grouplens"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README", "bench-lock.json", "u.data", "u.item", "u.user"
    ]
    lock = json.loads((folder / "bench-lock.json").read_text())
    assert lock["files"]["u.data"] == hashlib.sha256((folder / "u.data").read_bytes()).hexdigest()
    assert lock["sources"][0]["url"] == f"{GL}/ml-100k.zip"
    assert lock["sources"][0]["md5"] == hashlib.md5(ml100k_zip()).hexdigest()
    assert lock["checksum_rule"] == "published-md5"
    err = capsys.readouterr().err
    assert "licence: GroupLens MovieLens terms" in err and "cite: F. Maxwell Harper" in err
    assert not (tmp_path / ".downloads" / "ml-100k-grouplens").exists()
    assert leftovers(tmp_path) == []


def test_later_use_verifies_the_lock_and_does_not_download_again(server, tmp_path):
    serve_grouplens(server, "ml-100k.zip", ml100k_zip())
    load("ml-100k-grouplens", tmp_path)
    n = len(server.state.requests)
    load("ml-100k-grouplens", tmp_path)
    assert len(server.state.requests) == n
    data = tmp_path / "ml-100k-grouplens" / "u.data"
    data.write_bytes(data.read_bytes().replace(b"\t5\t", b"\t4\t"))
    with pytest.raises(DataError, match=r"u\.data: sha256 \w+ differs from \w+ recorded in .*"
                       r"bench-lock\.json .*delete .* and run `bench data fetch "
                       r"ml-100k-grouplens`"):
        load("ml-100k-grouplens", tmp_path)
    assert len(server.state.requests) == n


def test_pinned_files_dont_warn_as_unpinned_after_a_fetch(server, tmp_path):
    serve_grouplens(server, "ml-100k.zip", ml100k_zip())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.load_dataset({"name": "ml-100k-grouplens", "data_root": str(tmp_path)})
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "is not pinned" in t]
    assert any("100,000" in t for t in texts)  # the counts check still speaks


def test_csv_zips_ml20m_and_ml32m_fetch_into_their_folders(server, tmp_path):
    for name in ("ml-20m", "ml-32m"):
        serve_grouplens(server, f"{name}.zip", ml_csv_zip(name))
        ds = load(name, tmp_path)
        assert ds.counts() == {"interactions": 4, "users": 2, "items": 3}
        assert (tmp_path / name / "links.csv").is_file()


def test_gunzip_and_plain_files_amazon(server, tmp_path):
    csv = b"user_id,parent_asin,rating,timestamp\nA1,P1,5.0,1588687728923\nA2,P1,4,1588687729923\n"
    server.put(f"{AMZ}/benchmark/5core/rating_only/Books.csv.gz", gzip.compress(csv))
    ds = load("amazon-books", tmp_path)
    assert ds.counts() == {"interactions": 2, "users": 2, "items": 1}
    assert (tmp_path / "amazon-books" / "Books.csv").read_bytes() == csv
    server.put(f"{AMZ}/raw/review_categories/All_Beauty.jsonl.gz", jsonl_gz(amazon_reviews()))
    server.put(f"{AMZ}/raw/meta_categories/meta_All_Beauty.jsonl.gz", jsonl_gz(amazon_meta()))
    ds = load("amazon2023-all-beauty", tmp_path)
    assert ds.counts() == {"interactions": 6, "users": 3, "items": 3}


def test_mind_two_zips_unpack_into_train_and_dev(server, tmp_path):
    base = "https://recodatasets.z20.web.core.windows.net/newsrec"
    server.put(f"{base}/MINDsmall_train.zip", mind_zip("train"))
    server.put(f"{base}/MINDsmall_dev.zip", mind_zip("dev"))
    ds = load("mind-small", tmp_path)
    assert ds.counts() == {"interactions": 5, "users": 3, "items": 4}
    lock = json.loads((tmp_path / "mind-small" / "bench-lock.json").read_text())
    assert sorted(lock["files"]) == sorted(
        ["train/behaviors.tsv", "train/news.tsv", "dev/behaviors.tsv", "dev/news.tsv"]
    )


def test_unpinned_counts_are_recorded_in_the_lock_then_checked(server, tmp_path):
    """MIND publishes no exact counts: the first load records them in bench-lock.json (per
    loader configuration), later loads are checked against them."""
    base = "https://recodatasets.z20.web.core.windows.net/newsrec"
    server.put(f"{base}/MINDsmall_train.zip", mind_zip("train"))
    server.put(f"{base}/MINDsmall_dev.zip", mind_zip("dev"))
    load("mind-small", tmp_path)
    path = tmp_path / "mind-small" / "bench-lock.json"
    lock = json.loads(path.read_text())
    ((key, counts),) = lock["counts"].items()
    assert counts == {"interactions": 5, "users": 3, "items": 4}
    cfg = {"name": "mind-small", "data_root": str(tmp_path)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        D.load_dataset(cfg)  # the same counts: silent, nothing rewritten
    assert json.loads(path.read_text()) == lock
    lock["counts"][key]["users"] = 4  # as if an older loader had read 4 users
    path.write_text(json.dumps(lock))
    with pytest.warns(DatasetWarning, match=r"3 users loaded, .*bench-lock.json recorded 4 at"):
        D.load_dataset(cfg)
    D.load_dataset({**cfg, "parts": ["train"]})  # another configuration: its own record
    assert len(json.loads(path.read_text())["counts"]) == 2


# --------------------------------------------------------------------------------------------
# checksums refused, nothing kept


def test_published_md5_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    serve_grouplens(server, "ml-100k.zip", ml100k_zip(), md5_of=b"another release")
    with pytest.raises(DataError, match=r"ml-100k\.zip: md5 \w{32} differs from the expected "
                       r"\w{32}; the download was deleted and nothing was kept"):
        load("ml-100k-grouplens", tmp_path)
    assert not (tmp_path / "ml-100k-grouplens").exists()
    assert list((tmp_path / ".downloads").glob("**/*.part")) == []
    assert leftovers(tmp_path) == []


def test_the_manifest_md5_pin_of_ml1m_refuses_another_zip(server, tmp_path):
    """ml-1m pins the md5 GroupLens publishes; a fixture zip (with a matching sidecar) is not it."""
    body = zip_bytes({"ml-1m/ratings.dat": b"1::1::5::978300760\n"})
    serve_grouplens(server, "ml-1m.zip", body)
    with pytest.raises(DataError, match=r"publishes md5 \w+, the manifest pins "
                       r"c4d9eecfca2ab87c1945afe126590906"):
        load("ml-1m", tmp_path)
    assert not (tmp_path / "ml-1m").exists()


def custom_manifest(tmp_path: Path, url: str, **entry) -> Path:
    mdir = tmp_path / "manifests"
    (mdir / "toy").mkdir(parents=True)
    (mdir / "toy" / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "toy",
                "checksum": "pinned",
                "licence": "CC0",
                "citation": "nobody",
                "fetch": {"files": [{"url": url, **entry}], "expect": ["log.csv"]},
                "load": {
                    "loader": "table",
                    "files": {"interactions": "log.csv"},
                    "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
                },
            }
        )
    )
    return mdir


def test_sha256_pin_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    url = "https://example.org/data/log.csv"
    server.put(url, b"u,i,t\n1,2,3\n")
    mdir = custom_manifest(tmp_path, url, sha256="0" * 64)
    with pytest.raises(DataError, match=r"log\.csv: sha256 \w+ differs from the expected 0{64}"):
        load("toy", tmp_path / "root", manifest_dir=str(mdir))
    assert not (tmp_path / "root" / "toy").exists()
    good = hashlib.sha256(b"u,i,t\n1,2,3\n").hexdigest()
    (mdir / "toy").rename(tmp_path / "old")
    mdir2 = custom_manifest(tmp_path, url, sha256=good)
    assert load("toy", tmp_path / "root", manifest_dir=str(mdir2)).counts()["interactions"] == 1


# --------------------------------------------------------------------------------------------
# interrupted, 404, redirects, offline


def test_interrupted_download_is_resumed_with_range(server, tmp_path):
    body = ml_csv_zip("ml-20m")
    serve_grouplens(server, "ml-20m.zip", body)
    server.state.drop["/files.grouplens.org/datasets/movielens/ml-20m.zip"] = 1
    ds = load("ml-20m", tmp_path)
    assert ds.counts()["interactions"] == 4
    gets = [r for p, r in server.state.requests if p.endswith("ml-20m.zip")]
    assert gets == [None, f"bytes={len(body) // 2}-"]


def test_download_interrupted_every_time_keeps_the_part_and_the_next_call_resumes(
    server, tmp_path
):
    body = ml_csv_zip("ml-20m")
    serve_grouplens(server, "ml-20m.zip", body)
    path = "/files.grouplens.org/datasets/movielens/ml-20m.zip"
    server.state.drop[path] = F.ATTEMPTS
    with pytest.raises(DataError, match=r"was interrupted 3 times \([\d,]+ bytes kept in .*"
                       r"ml-20m\.zip\.part\); run the same command again to resume"):
        load("ml-20m", tmp_path)
    part = tmp_path / ".downloads" / "ml-20m" / "ml-20m.zip.part"
    assert 0 < part.stat().st_size < len(body)
    assert not (tmp_path / "ml-20m").exists()
    kept = part.stat().st_size
    load("ml-20m", tmp_path)
    assert server.state.requests[-1] == (path, f"bytes={kept}-")
    assert not part.exists()


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    body = ml_csv_zip("ml-20m")
    serve_grouplens(server, "ml-20m.zip", body)
    server.state.drop["/files.grouplens.org/datasets/movielens/ml-20m.zip"] = 1
    server.state.ignore_range = True
    assert load("ml-20m", tmp_path).counts()["interactions"] == 4


def test_404_is_one_line_naming_url_folder_and_files(server, tmp_path):
    serve_grouplens(server, "ml-20m.zip", b"")
    del server.state.files["/files.grouplens.org/datasets/movielens/ml-20m.zip"]
    with pytest.raises(DataError) as e:
        load("ml-20m", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot download {server.mirror}/files.grouplens.org/datasets/"
                          f"movielens/ml-20m.zip: HTTP 404 Not Found; download {GL}/ml-20m.zip "
                          f"by hand and unpack into {tmp_path / 'ml-20m'} so that it holds "
                          f"ratings.csv, movies.csv")
    assert not (tmp_path / "ml-20m").exists()


def test_cli_fetch_404_exit_2_one_line(server, tmp_path, capsys):
    rc = cli_main(["data", "fetch", "ml-32m", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: cannot download ") and "HTTP 404" in err[-1]


def test_redirects_are_followed(server, tmp_path):
    body = ml_csv_zip("ml-32m")
    server.state.files["/elsewhere/ml-32m.zip"] = body
    server.put(f"{GL}/ml-32m.zip.md5", md5_sidecar("ml-32m.zip", body))
    server.state.redirects["/files.grouplens.org/datasets/movielens/ml-32m.zip"] = (
        f"{server.mirror}/elsewhere/ml-32m.zip"
    )
    assert load("ml-32m", tmp_path).counts()["interactions"] == 4
    assert [p for p, _ in server.state.requests][-1] == "/elsewhere/ml-32m.zip"


@pytest.mark.parametrize(
    "evil", ["ml-100k/../../escaped.txt", "/tmp/absolute-escape.txt", "..\\escaped.txt"]
)
def test_zip_path_traversal_is_refused_and_nothing_is_written(server, tmp_path, evil):
    members = {"ml-100k/u.data": b"1\t1\t5\t874965758\n", evil: b"pwned"}
    serve_grouplens(server, "ml-100k.zip", zip_bytes(members))
    with pytest.raises(DataError, match=r"entry .* has an absolute path or '\.\.' .* refused"):
        load("ml-100k-grouplens", tmp_path / "root")
    assert not (tmp_path / "root" / "ml-100k-grouplens").exists()
    assert not (tmp_path / "root" / ".downloads" / "ml-100k-grouplens").exists()  # not kept
    assert not list(tmp_path.rglob("*escape*"))
    assert leftovers(tmp_path) == []


def test_a_zip_with_a_symlink_entry_is_refused(server, tmp_path):
    import io
    import stat
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", b"1\t1\t5\t874965758\n")
        link = zipfile.ZipInfo("ml-100k/u.item")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    serve_grouplens(server, "ml-100k.zip", buf.getvalue())
    with pytest.raises(DataError, match=r"entry 'ml-100k/u\.item' is a symbolic link; refused"):
        load("ml-100k-grouplens", tmp_path)
    assert not (tmp_path / "ml-100k-grouplens").exists()


def test_an_archive_without_the_expected_files_keeps_nothing(server, tmp_path):
    serve_grouplens(server, "ml-100k.zip", zip_bytes({"ml-100k/u.data": b"1\t1\t5\t8\n"}))
    with pytest.raises(DataError, match=r"do not contain u\.item, u\.user; nothing was kept"):
        load("ml-100k-grouplens", tmp_path)
    assert not (tmp_path / "ml-100k-grouplens").exists()
    assert not (tmp_path / ".downloads" / "ml-100k-grouplens").exists()
    assert leftovers(tmp_path) == []


def test_offline_missing_dataset_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        load("ml-1m", tmp_path)
    assert str(e.value) == (
        f"dataset 'ml-1m' is not in {tmp_path / 'ml-1m'} (missing ratings.dat, movies.dat, "
        f"users.dat) and BENCH_OFFLINE is set; download {GL}/ml-1m.zip by hand and unpack into "
        f"{tmp_path / 'ml-1m'} so that it holds ratings.dat, movies.dat, users.dat (or set "
        f"BENCH_DATA_MIRROR to a mirror)"
    )


def test_unreachable_server_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    with FileServer() as s:
        mirror = s.mirror
    monkeypatch.setenv("BENCH_DATA_MIRROR", mirror)  # closed: connection refused
    with pytest.raises(DataError, match=r"^cannot download .*ml-1m\.zip\.md5: unreachable "
                       r"\(.*; offline\?\); download .*ml-1m\.zip by hand and unpack into "):
        load("ml-1m", tmp_path)


def test_files_put_there_by_hand_are_used_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    (tmp_path / "ml-20m").mkdir()
    (tmp_path / "ml-20m" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,5\n")
    (tmp_path / "ml-20m" / "movies.csv").write_text("movieId,title,genres\n1,X (1999),Drama\n")
    assert load("ml-20m", tmp_path).counts()["interactions"] == 1


# --------------------------------------------------------------------------------------------
# bench data


def test_cli_data_help_list_info(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["data", "--help"])
    assert e.value.code == 0
    assert "{list,info,fetch,verify}" in capsys.readouterr().out
    assert cli_main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k-grouplens" in out and "published-md5" in out and "mind-small" in out
    assert cli_main(["data", "info", "amazon2023-video-games"]) == 0
    out = capsys.readouterr().out
    assert f"{AMZ}/raw/review_categories/Video_Games.jsonl.gz" in out
    assert "checksum:  lock" in out and "Hou" in out
    assert cli_main(["data", "info", "ml-1mm"]) == 2
    assert "did you mean 'ml-1m'" in capsys.readouterr().err


def test_data_smoke_in_a_new_interpreter():
    """The one subprocess test of ``bench data``: the commands are tested in-process above."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", "data", "info", "ml-1mm"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    (line,) = out.stderr.strip().splitlines()  # one line, no traceback
    assert out.returncode == 2 and "did you mean 'ml-1m'" in line


def test_cli_fetch_then_verify_then_tamper(server, tmp_path, capsys):
    serve_grouplens(server, "ml-100k.zip", ml100k_zip())
    root = ["--data-root", str(tmp_path)]
    assert cli_main(["data", "fetch", "ml-100k-grouplens", *root]) == 0
    assert "ok: ml-100k-grouplens" in capsys.readouterr().out
    assert cli_main(["data", "fetch", "ml-100k-grouplens", *root]) == 0
    assert "already in" in capsys.readouterr().out
    assert cli_main(["data", "verify", "ml-100k-grouplens", *root]) == 0
    assert "checksums ok: 3 file(s) match" in capsys.readouterr().out
    assert cli_main(["data", "verify", "ml-100k-grouplens", "--counts", *root]) == 2
    assert "5 interactions loaded, its manifest expects 100,000" in capsys.readouterr().err
    (tmp_path / "ml-100k-grouplens" / "u.user").write_text("1|24|M|technician|85711\n")
    assert cli_main(["data", "verify", "ml-100k-grouplens", *root]) == 2
    assert "u.user: sha256" in capsys.readouterr().err


def test_cli_fetch_of_a_dataset_without_files(capsys):
    assert cli_main(["data", "fetch", "synthetic"]) == 2
    assert "has nothing to fetch" in capsys.readouterr().err
    assert cli_main(["data", "verify", "synthetic"]) == 0
    assert "is generated: no files to check" in capsys.readouterr().out


def test_cli_verify_the_bundled_ml100k_pins_and_counts(capsys):
    assert cli_main(["data", "verify", "ml-100k", "--counts"]) == 0
    out = capsys.readouterr().out
    assert "checksums ok: 3 file(s) match the manifest's sha256 pins" in out
    assert "interactions: 100,000\nusers: 943\nitems: 1,682" in out


def test_cli_verify_a_missing_dataset_names_the_fetch(tmp_path, capsys):
    assert cli_main(["data", "verify", "ml-32m", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    want = (
        f"ratings.csv, movies.csv missing in {tmp_path / 'ml-32m'}; run `bench data fetch "
        f"ml-32m`, or download {GL}/ml-32m.zip by hand"
    )
    assert want in err
