"""A file server on 127.0.0.1 and small archives in each source's real format, built in tmp."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from baselines.llm.testing import LocalHTTPServer


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # path -> body
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    drop: dict[str, int] = field(default_factory=dict)  # path -> times to cut the body in half
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        st = self.state
        with st.lock:
            st.requests.append((self.path, self.headers.get("Range")))
        if self.path in st.redirects:
            self.send_response(302)
            self.send_header("Location", st.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = st.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        with st.lock:
            cut = st.drop.get(self.path, 0) > 0
            if cut:
                st.drop[self.path] -= 1
        if cut:  # promise the whole body, send half, close: an interrupted transfer
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(rest)


class FileServer(LocalHTTPServer):
    """Serves ``state.files`` by path; ``mirror`` is the base URL for ``BENCH_DATA_MIRROR``."""

    def __init__(self, state: ServerState | None = None) -> None:
        self.state = state or ServerState()
        super().__init__(type("Handler", (_Handler,), {"state": self.state}))

    @property
    def mirror(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def put(self, url: str, body: bytes) -> str:
        """Serve ``body`` where the mirror maps ``url`` (``https://host/p`` -> ``/host/p``)."""
        path = "/" + url.split("://", 1)[1]
        self.state.files[path] = body
        return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def md5_sidecar(name: str, body: bytes) -> bytes:
    """GroupLens' ``<zip>.md5`` format: ``MD5 (ml-1m.zip) = <hex>``."""
    return f"MD5 ({name}) = {hashlib.md5(body).hexdigest()}\n".encode()


def ml100k_zip() -> bytes:
    """ml-100k.zip: ``ml-100k/u.data`` (tab), ``u.item``/``u.user`` (``|``, latin-1) + README.
    5 ratings, 3 users, 3 items."""
    genres = "|".join(["0"] * 19)
    action = "|".join(["0", "1"] + ["0"] * 17)
    return zip_bytes(
        {
            "ml-100k/u.data": b"1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n"
            b"3\t3\t1\t876893119\n3\t1\t2\t889751712\n",
            "ml-100k/u.item": (
                f"1|Toy Story (1995)|01-Jan-1995||http://x|{genres}\n"
                f"2|GoldenEye (1995)|01-Jan-1995||http://x|{action}\n"
                f"3|Caf\xe9 au lait (1994)|01-Jan-1994||http://x|{genres}\n"
            ).encode("latin-1"),
            "ml-100k/u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n"
            b"3|23|M|writer|32067\n",
            "ml-100k/README": b"MovieLens 100K fixture\n",
        }
    )


def ml_csv_zip(folder: str) -> bytes:
    """ml-20m.zip / ml-32m.zip: ``<folder>/ratings.csv`` and ``movies.csv`` with headers.
    4 ratings, 2 users, 3 items."""
    return zip_bytes(
        {
            f"{folder}/ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,1112486027\n"
            b"1,2,3.5,1112484676\n2,1,5.0,1112484819\n2,3,3.0,1112484727\n",
            f"{folder}/movies.csv": b"movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n"
            b'2,Jumanji (1995),Adventure\n3,"Heat, The (1995)",(no genres listed)\n',
            f"{folder}/links.csv": b"movieId,imdbId,tmdbId\n1,0114709,862\n",
        }
    )


def jsonl_gz(rows: list[dict]) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())


def amazon_reviews(n_users: int = 3) -> list[dict]:
    """Amazon Reviews 2023 review rows: 6 reviews, 3 users, 3 items (parent_asin)."""
    pairs = [("A1", "P1"), ("A1", "P2"), ("A2", "P1"), ("A2", "P3"), ("A3", "P2"), ("A3", "P3")]
    return [
        {
            "rating": float(1 + i % 5),
            "title": f"review {i}",
            "text": "fine",
            "images": [],
            "asin": f"{item}-v",
            "parent_asin": item,
            "user_id": user,
            "timestamp": 1588687728923 + i * 1000,
            "helpful_vote": 0,
            "verified_purchase": True,
        }
        for i, (user, item) in enumerate(pairs)
        if int(user[1:]) <= n_users
    ]


def amazon_meta() -> list[dict]:
    """meta rows of P1..P3 (+ P4 without reviews): prices as float, null and "None"."""
    base = {
        "main_category": "All Beauty",
        "average_rating": 4.0,
        "rating_number": 10,
        "features": [],
        "images": [],
        "videos": [],
        "store": "Acme",
        "details": {"Brand": "Acme"},
        "bought_together": None,
    }
    return [
        {**base, "parent_asin": "P1", "title": "Lip balm", "price": 4.99,
         "description": ["Soft.", "Long lasting, with shea."], "categories": ["Beauty", "Lips"]},
        {**base, "parent_asin": "P2", "title": "Shampoo", "price": None,
         "description": [], "categories": []},
        {**base, "parent_asin": "P3", "title": "Comb", "price": "None",
         "description": ["Wide teeth."], "categories": ["Hair"]},
        {**base, "parent_asin": "P4", "title": "Brush", "price": "$12.50",
         "description": ["Bristles."], "categories": ["Hair", "Tools"]},
    ]


def mind_zip(part: str) -> bytes:
    """MINDsmall_<part>.zip (files at the root): behaviors.tsv, news.tsv, entity embeddings."""
    if part == "train":
        behaviors = (
            "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0 N5-0\n"
            "2\tU2\t11/12/2019 2:10:05 PM\t\tN3-0 N4-1 N5-1\n"
            "3\tU1\t11/13/2019 11:00:00 PM\tN1\tN5-1\n"
        )
        news = (
            "N1\tnews\tnewsus\tA title\tAn abstract\thttps://x/1\t[]\t[]\n"
            "N3\tsports\tfootball\tGame \"night\"\t\thttps://x/3\t[]\t[]\n"
            "N4\tfinance\tmarkets\tStocks up\tMarkets rose.\thttps://x/4\t[]\t[]\n"
            "N5\tnews\tnewsworld\tWorld news\tSomething happened.\thttps://x/5\t[]\t[]\n"
        )
    else:
        behaviors = "4\tU3\t11/15/2019 8:55:22 AM\tN2\tN6-1 N3-0\n"
        news = (
            "N3\tsports\tfootball\tGame \"night\"\t\thttps://x/3\t[]\t[]\n"
            "N6\tlifestyle\tfood\tRecipes\tCook.\thttps://x/6\t[]\t[]\n"
        )
    return zip_bytes(
        {
            "behaviors.tsv": behaviors.encode(),
            "news.tsv": news.encode(),
            "entity_embedding.vec": b"Q1\t0.1\t0.2\n",
            "relation_embedding.vec": b"P1\t0.1\t0.2\n",
        }
    )
