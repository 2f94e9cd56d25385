"""Fetch a dataset on first use: download, verify, unpack atomically, record a lock file.

A manifest's ``fetch:`` section names the source files and the dataset files they must yield::

    checksum: published-md5          # the rule: published-md5 | lock | pinned | generated
    fetch:
      files:
        - url: https://files.grouplens.org/datasets/movielens/ml-1m.zip
          md5_url: https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5
          strip: ml-1m                # archive folder whose content becomes the dataset folder
      expect: [ratings.dat, movies.dat, users.dat]

Each file is downloaded to ``<data_root>/.downloads/<id>/<name>.part`` (an interrupted download
resumes with an HTTP ``Range`` request), checked against its checksum (``md5``/``sha256`` pinned
in the entry, or the md5 the source publishes at ``md5_url``); a mismatch deletes the download and
keeps nothing. Archives are unpacked into a temporary folder next to the dataset folder (entries
with absolute paths, ``..`` or links are refused), the ``expect`` files must be there, their
sha256 are written to ``bench-lock.json`` and only then is the folder renamed into place. Every
later use verifies the files against that lock (``verify_lock``).

``BENCH_DATA_MIRROR`` (or ``mirror=``) replaces ``https://<host>/<path>`` by
``<mirror>/<host>/<path>``; ``BENCH_OFFLINE=1`` never touches the network.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from bench.data.paths import sha256_file
from bench.errors import DataError
from bench.files import write_atomically, write_folder_atomically

LOCK_NAME = "bench-lock.json"
DOWNLOADS = ".downloads"
CHECKSUM_RULES = ("published-md5", "lock", "pinned", "generated")
UNPACK = ("zip", "gunzip", "none")
CHUNK = 1 << 20
ATTEMPTS = 3  # per file: a dropped connection resumes up to this many times in one call
TIMEOUT = 60.0


@dataclass(frozen=True)
class SourceFile:
    """One file of a manifest's ``fetch.files``."""

    url: str
    name: str  # file name in the download folder (default: the URL's last segment)
    unpack: str  # zip | gunzip | none
    strip: str = ""  # archive folder whose content is unpacked (zip)
    into: str = ""  # subfolder of the dataset folder to unpack into
    md5: str | None = None
    sha256: str | None = None
    md5_url: str | None = None

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any], where: str) -> SourceFile:
        if not isinstance(entry, Mapping) or not entry.get("url"):
            raise DataError(f"{where}: every fetch.files entry needs a url, got {entry!r}")
        url = str(entry["url"])
        name = str(entry.get("name") or PurePosixPath(urllib.parse.urlparse(url).path).name)
        default = "zip" if name.endswith(".zip") else "none"
        unpack = str(entry.get("unpack") or default)
        if unpack not in UNPACK:
            raise DataError(f"{where}: unpack {unpack!r} of {url} is not one of {UNPACK}")
        for key in ("strip", "into"):
            value = str(entry.get(key) or "")
            if value and (value.startswith("/") or ".." in PurePosixPath(value).parts):
                raise DataError(f"{where}: {key} {value!r} of {url} must be a relative folder")
        return cls(
            url=url,
            name=name,
            unpack=unpack,
            strip=str(entry.get("strip") or "").strip("/"),
            into=str(entry.get("into") or "").strip("/"),
            md5=_hex(entry.get("md5")),
            sha256=_hex(entry.get("sha256")),
            md5_url=str(entry["md5_url"]) if entry.get("md5_url") else None,
        )


@dataclass(frozen=True)
class FetchSpec:
    """A manifest's fetch section, parsed."""

    dataset: str
    rule: str
    files: tuple[SourceFile, ...]
    expect: tuple[str, ...]
    licence: str
    citation: str

    @property
    def urls(self) -> list[str]:
        return [f.url for f in self.files]


def _hex(value: Any) -> str | None:
    return str(value).strip().lower() if value else None


def fetch_spec(manifest: Mapping[str, Any]) -> FetchSpec | None:
    """The manifest's ``fetch:`` section, or None when it has none (nothing to download)."""
    section = manifest.get("fetch")
    if not section:
        return None
    where = str(manifest.get("_path", "manifest"))
    files = tuple(SourceFile.from_mapping(e, where) for e in section.get("files") or [])
    expect = tuple(str(e) for e in section.get("expect") or [])
    if not files or not expect:
        raise DataError(f"{where}: fetch needs files (url, ...) and expect (the dataset's files)")
    return FetchSpec(
        dataset=str(manifest.get("id", "?")),
        rule=str(manifest.get("checksum", "lock")),
        files=files,
        expect=expect,
        licence=" ".join(str(manifest.get("licence", "")).split()),
        citation=" ".join(str(manifest.get("citation", "")).split()),
    )


# --------------------------------------------------------------------------------------------
# messages


def manual_hint(spec: FetchSpec, directory: Path) -> str:
    """How to put the files in place by hand: the URLs, the folder and the files expected."""
    return (
        f"download {' and '.join(spec.urls)} by hand and unpack into {directory} so that it holds "
        f"{', '.join(spec.expect)} (or set BENCH_DATA_MIRROR to a mirror)"
    )


def missing(spec: FetchSpec, directory: Path) -> list[str]:
    """The ``expect`` files that are not in the dataset folder."""
    return [e for e in spec.expect if not (directory / e).is_file()]


def offline() -> bool:
    return os.environ.get("BENCH_OFFLINE", "").strip().lower() in ("1", "true")


def mirrored(url: str, mirror: str | None = None) -> str:
    """``https://host/path`` -> ``<mirror>/host/path`` when a mirror is set."""
    mirror = mirror if mirror is not None else os.environ.get("BENCH_DATA_MIRROR")
    if not mirror:
        return url
    parts = urllib.parse.urlparse(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


# --------------------------------------------------------------------------------------------
# downloading


def _request(url: str, start: int) -> urllib.request.Request:
    from bench import __version__

    headers = {"User-Agent": f"llmrec-harness/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _http_error(url: str, e: Exception, spec: FetchSpec, directory: Path) -> DataError:
    if isinstance(e, urllib.error.HTTPError):
        why = f"HTTP {e.code} {e.reason}"
    else:
        reason = getattr(e, "reason", None) or e
        why = f"unreachable ({reason}; offline?)"
    return DataError(f"cannot download {url}: {why}; {manual_hint(spec, directory)}")


def _progress(total: int | None, start: int, label: str) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, leave=False)


def download(url: str, part: Path, spec: FetchSpec, directory: Path) -> None:
    """Download ``url`` into ``part``, resuming from its size with ``Range`` (redirects are
    followed by urllib). A dropped connection is resumed up to ``ATTEMPTS`` times; after that
    the ``.part`` stays for the next call and the error says so."""
    for _ in range(ATTEMPTS):
        try:
            if _download_once(url, part):
                return
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # the part is not a prefix of this file
                part.unlink()
                continue
            raise _http_error(url, e, spec, directory) from None
        except urllib.error.URLError as e:  # no connection (the .part, if any, stays)
            raise _http_error(url, e, spec, directory) from None
        except (OSError, http.client.HTTPException):  # dropped mid-body: resume from the part
            continue
    size = part.stat().st_size if part.exists() else 0
    raise DataError(
        f"download of {url} was interrupted {ATTEMPTS} times ({size:,} bytes kept in {part}); "
        f"run the same command again to resume, or {manual_hint(spec, directory)}"
    )


def _download_once(url: str, part: Path) -> bool:
    """One request; True when the body arrived complete."""
    start = part.stat().st_size if part.exists() else 0
    with urllib.request.urlopen(_request(url, start), timeout=TIMEOUT) as resp:
        status = getattr(resp, "status", None) or 200
        if start and status != 206:
            start = 0  # the server ignored Range: start over
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        bar = _progress(total, start, part.name.removesuffix(".part"))
        try:
            with open(part, "ab" if start else "wb") as out:
                _copy(resp, out, bar)
        finally:
            if bar is not None:
                bar.close()
    size = part.stat().st_size
    return total is None or size == total


def _copy(src: BinaryIO, out: BinaryIO, bar: Any) -> None:
    while True:
        block = src.read(CHUNK)
        if not block:
            return
        out.write(block)
        if bar is not None:
            bar.update(len(block))


def fetch_text(url: str, spec: FetchSpec, directory: Path) -> str:
    """A small text file (a published ``.md5``)."""
    try:
        with urllib.request.urlopen(_request(url, 0), timeout=TIMEOUT) as resp:
            return bytes(resp.read(1 << 16)).decode("utf-8", errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise _http_error(url, e, spec, directory) from None


# --------------------------------------------------------------------------------------------
# checksums


def digests(path: Path) -> dict[str, str]:
    """md5 and sha256 of a file in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


_MD5 = re.compile(r"\b[0-9a-fA-F]{32}\b")


def expected_md5(src: SourceFile, url: str, spec: FetchSpec, directory: Path) -> str | None:
    """The md5 the source publishes (``md5_url``, GroupLens' ``MD5 (x.zip) = <hex>``)."""
    if src.md5_url is None:
        return None
    text = fetch_text(url, spec, directory)
    m = _MD5.search(text)
    if m is None:
        raise DataError(
            f"{url}: expected a published md5 sum, got {text.strip()[:80]!r}; "
            f"{manual_hint(spec, directory)}"
        )
    return m.group(0).lower()


def check(path: Path, got: Mapping[str, str], want: Mapping[str, str | None], url: str) -> None:
    """Refuse (and delete) a download whose digest differs from what is expected."""
    for algo, value in want.items():
        if value is not None and got[algo] != value:
            path.unlink(missing_ok=True)
            raise DataError(
                f"{url}: {algo} {got[algo]} differs from the expected {value}; the download was "
                f"deleted and nothing was kept (a corrupt transfer or a changed file at the "
                f"source: retry, and if it persists report it)"
            )


# --------------------------------------------------------------------------------------------
# unpacking


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    norm = name.replace("\\", "/")
    path = PurePosixPath(norm)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in path.parts:
        raise DataError(
            f"{archive}: entry {name!r} has an absolute path or '..' and would be written "
            f"outside the dataset folder; refused, nothing was unpacked (the archive is not a "
            f"genuine release)"
        )
    return path


def _members(zf: zipfile.ZipFile, archive: Path, strip: str) -> Iterator[tuple[Any, PurePosixPath]]:
    """Every file entry (checked first, all of them) with its path below ``strip``."""
    infos = zf.infolist()
    for info in infos:
        _safe_member(info.filename, archive)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{archive}: entry {info.filename!r} is a symbolic link; refused")
    for info in infos:
        path = _safe_member(info.filename, archive)
        if info.is_dir():
            continue
        if strip:
            if path.parts[: len(PurePosixPath(strip).parts)] != PurePosixPath(strip).parts:
                continue
            path = PurePosixPath(*path.parts[len(PurePosixPath(strip).parts) :])
        yield info, path


def unpack(src: SourceFile, archive: Path, into: Path) -> None:
    """Unpack (or move) a verified download into the staging folder ``into``."""
    target = into / src.into if src.into else into
    target.mkdir(parents=True, exist_ok=True)
    if src.unpack == "none":
        os.replace(archive, target / src.name)
    elif src.unpack == "gunzip":
        with gzip.open(archive, "rb") as f, open(target / src.name.removesuffix(".gz"), "wb") as o:
            shutil.copyfileobj(f, o, CHUNK)
    else:
        try:
            with zipfile.ZipFile(archive) as zf:
                for info, rel in _members(zf, archive, src.strip):
                    out = target.joinpath(*rel.parts)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as f, open(out, "wb") as o:
                        shutil.copyfileobj(f, o, CHUNK)
        except zipfile.BadZipFile as e:
            raise DataError(f"{archive}: not a zip archive ({e}); delete it and fetch again") from e


# --------------------------------------------------------------------------------------------
# the lock file


def write_lock(folder: Path, spec: FetchSpec, sources: list[dict[str, Any]]) -> dict[str, Any]:
    lock = {
        "dataset": spec.dataset,
        "checksum_rule": spec.rule,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": sources,
        "files": {e: sha256_file(folder / e) for e in spec.expect},
    }
    (folder / LOCK_NAME).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock


def update_lock(directory: Path, **fields: Any) -> None:
    """Add or replace top-level ``fields`` of an existing lock file, atomically (two loads
    recording the same counts at once both write the same content)."""
    lock = read_lock(directory)
    if lock is None:
        return
    text = json.dumps({**lock, **fields}, indent=2, sort_keys=True) + "\n"
    try:
        write_atomically(directory / LOCK_NAME, lambda tmp: tmp.write_text(text))
    except OSError as e:  # a read-only data folder: the counts are simply not recorded
        warnings.warn(f"{directory / LOCK_NAME}: could not record counts ({e})", stacklevel=2)


def read_lock(directory: Path) -> dict[str, Any] | None:
    path = directory / LOCK_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete the folder and fetch again") from e
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise DataError(f"{path}: no 'files' mapping; delete the folder and fetch again")
    return data


def verify_lock(directory: Path, dataset: str) -> dict[str, Any] | None:
    """Every file the lock records still has its recorded sha256 (None: no lock)."""
    lock = read_lock(directory)
    if lock is None:
        return None
    fix = f"delete {directory} and run `bench data fetch {dataset}`"
    for rel, want in lock["files"].items():
        path = directory / rel
        if not path.is_file():
            raise DataError(f"{path}: missing, but {directory / LOCK_NAME} records it; {fix}")
        got = sha256_file(path)
        if got != want:
            raise DataError(
                f"{path}: sha256 {got} differs from {want} recorded in {directory / LOCK_NAME} "
                f"when it was fetched ({lock.get('fetched', '?')}); the file changed: {fix}"
            )
    return lock


# --------------------------------------------------------------------------------------------
# the whole fetch


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One fetch of a dataset at a time (parallel sweep jobs wait for the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def ensure(
    spec: FetchSpec,
    directory: Path,
    *,
    mirror: str | None = None,
    say: Callable[[str], None] | None = None,
) -> bool:
    """Fetch the dataset into ``directory`` unless its ``expect`` files are there.

    Returns True when it downloaded. Offline (``BENCH_OFFLINE=1``) a missing dataset is one
    ``DataError`` naming the URLs, the folder and the files expected."""
    if not missing(spec, directory):
        return False
    if offline():
        raise DataError(
            f"dataset '{spec.dataset}' is not in {directory} (missing "
            f"{', '.join(missing(spec, directory))}) and BENCH_OFFLINE is set; "
            f"{manual_hint(spec, directory)}"
        )
    say = say or (lambda m: print(m, file=sys.stderr))
    downloads = directory.parent / DOWNLOADS / directory.name
    with _exclusive(directory.parent / DOWNLOADS / f"{directory.name}.lock"):
        if not missing(spec, directory):  # another process fetched it meanwhile
            return False
        say(f"fetching dataset '{spec.dataset}' into {directory}")
        say(f"licence: {spec.licence}")
        say(f"cite: {spec.citation}")
        try:
            _fetch(spec, directory, downloads, mirror)
        finally:
            with contextlib.suppress(OSError):
                downloads.rmdir()  # only when empty: a .part stays for the next call to resume
    shutil.rmtree(downloads, ignore_errors=True)
    return True


def _fetch(spec: FetchSpec, directory: Path, downloads: Path, mirror: str | None) -> None:
    staged, sources = _download_all(spec, directory, downloads, mirror)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        # into an existing folder entry by entry, the lock last: a crash in between leaves no
        # lock and a dataset still incomplete
        write_folder_atomically(
            directory,
            lambda tmp: _stage(spec, staged, sources, tmp),
            existing="merge",
            last=(LOCK_NAME,),
        )
    except BaseException:
        for _, done in staged:  # a refused archive is not kept either
            done.unlink(missing_ok=True)
        raise


def _download_all(
    spec: FetchSpec, directory: Path, downloads: Path, mirror: str | None
) -> tuple[list[tuple[SourceFile, Path]], list[dict[str, Any]]]:
    """Download and verify every source file into ``downloads``; returns the verified files
    and their lock entries (url, size, digests)."""
    downloads.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[SourceFile, Path]] = []
    sources = []
    for src in spec.files:
        url = mirrored(src.url, mirror)
        md5 = src.md5
        published = None
        if src.md5_url:
            published = expected_md5(src, mirrored(src.md5_url, mirror), spec, directory)
        if md5 and published and md5 != published:
            raise DataError(
                f"{src.md5_url}: publishes md5 {published}, the manifest pins {md5}; the "
                f"release changed: check it and update the manifest"
            )
        md5 = md5 or published
        part = downloads / f"{src.name}.part"
        download(url, part, spec, directory)
        got = digests(part)
        check(part, got, {"md5": md5, "sha256": src.sha256}, url)
        done = downloads / src.name
        os.replace(part, done)  # complete and verified: no longer a part to resume
        staged.append((src, done))
        sources.append({"url": src.url, "bytes": done.stat().st_size, **got})
    return staged, sources


def _stage(
    spec: FetchSpec,
    staged: list[tuple[SourceFile, Path]],
    sources: list[dict[str, Any]],
    tmp: Path,
) -> None:
    """Unpack the verified downloads into the staging folder ``tmp``, check that the expected
    files are there and write the lock."""
    for src, done in staged:
        unpack(src, done, tmp)
    absent = missing(spec, tmp)
    if absent:
        raise DataError(
            f"the files of dataset '{spec.dataset}' ({', '.join(spec.urls)}) do not contain "
            f"{', '.join(absent)}; nothing was kept (the release changed: check the "
            f"manifest's fetch.expect and strip)"
        )
    write_lock(tmp, spec, sources)
