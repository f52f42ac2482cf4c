"""Sources under attack: a network that misbehaves, a cache that rots, archives crafted
to exhaust time, memory, disk or stack (issue 13, items 1, 5 and 8).

The network is a local HTTP server on 127.0.0.1 that misbehaves on purpose,
request by request, from a script per path. Every test asserts the outcome
(recovered by a retry, or refused with the URL and the reason), how many
requests the server saw, and that nothing partial is left in the cache: no
file under the final name, no temporary file, and a rerun against a server
that behaves succeeds. Timeouts are shrunk to fractions of a second and are
safety nets only: nothing asserts how long anything took.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import socket
import struct
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.sources import SourceCache, extract_archive, tree_hash
from kernbuild.sources.extract import ArchiveLimits
from kernbuild.sources.http import NetLimits, size
from tests.localhttp import serving
from tests.unit.test_sources import (  # noqa: F401 (no_proxy: autouse fixture)
    RELEASE, leftovers, make_tar, make_zip, no_proxy, sha256, write_recipe,
)

#: Short limits: a stall is seen in half a second, retries follow at once.
LIMITS = NetLimits(timeout=0.5, attempts=3, backoff=0.01, mismatch_retries=1,
                   max_bytes=1 << 20, max_document=256 << 10, deadline=60.0)

GOOD = make_tar({"demo-1.0/setup.py": b"print('setup')\n",
                 "demo-1.0/data.bin": random.Random(8).randbytes(96_000)}, mode="w")


# --- a server that misbehaves on purpose --------------------------------------------------


@dataclass
class Faulty:
    """A local HTTP server; each path answers by a script of behaviours, one per request
    (the last one repeats). ``seen`` counts the requests of each path."""

    url: str = ""
    body: bytes = GOOD
    scripts: dict[str, list[str]] = field(default_factory=dict)
    seen: Counter = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    documents: dict[str, bytes] = field(default_factory=dict)  # for the "json:NAME" behaviour

    def route(self, name: str, *behaviours: str) -> str:
        """Serve ``name`` by ``behaviours``; its URL."""
        with self.lock:
            self.scripts[f"/{name}"] = list(behaviours)
        return f"{self.url}/{name}"

    def next_behaviour(self, path: str) -> str:
        with self.lock:
            self.seen[path] += 1
            script = self.scripts.get(path, ["status:404"])
            return script.pop(0) if len(script) > 1 else script[0]


class FaultyHandler(BaseHTTPRequestHandler):
    faulty: Faulty  # set per server

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        faulty, body = self.faulty, self.faulty.body
        behaviour = faulty.next_behaviour(self.path)
        kind, _, argument = behaviour.partition(":")
        try:
            if kind == "ok":
                self.headers_for(200, len(body))
                self.send(body)
            elif kind == "status":
                self.headers_for(int(argument), 0)
            elif kind == "stall-headers":  # headers, then silence
                self.headers_for(200, len(body))
                self.wfile.flush()
                faulty.release.wait(30)
            elif kind == "stall-accept":  # the request is read, nothing ever answered
                faulty.release.wait(30)
            elif kind == "reset":  # half the body, then a TCP reset
                self.headers_for(200, len(body))
                self.send(body[:len(body) // 2])
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            elif kind == "truncate":  # declares the whole body, sends half, closes cleanly
                self.headers_for(200, len(body))
                self.send(body[:len(body) // 2])
            elif kind == "wrong":  # the right length, other bytes
                self.headers_for(200, len(body))
                self.send(bytes(b ^ 0xFF for b in body[:64]) + body[64:])
            elif kind == "slow":  # progresses steadily, each piece well within the timeout
                self.headers_for(200, len(body))
                pieces = 20
                step = -(-len(body) // pieces)
                for start in range(0, len(body), step):
                    self.send(body[start:start + step])
                    faulty.release.wait(float(argument or 0.05))
            elif kind == "redirect":  # to itself: a loop
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif kind == "endless":  # no Content-Length, and no end
                self.send_response(200)
                self.end_headers()
                chunk = b"\0" * 65536
                for _ in range(1 << 14):  # 1 GiB: a safety net, the client stops far sooner
                    self.send(chunk)
            elif kind == "huge-declared":  # declares 50 GB
                self.headers_for(200, 50 * 10**9)
                self.send(body)
            elif kind == "json":  # a PyPI JSON answer, from the argument's file
                document = faulty.documents[argument]
                self.headers_for(200, len(document))
                self.send(document)
            else:
                raise AssertionError(f"unknown behaviour {behaviour}")
        except OSError:
            pass  # the client hung up: what a misbehaving server sees

    def headers_for(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()


@pytest.fixture
def faulty() -> Iterator[Faulty]:
    served = Faulty()
    handler = type("Handler", (FaultyHandler,), {"faulty": served})
    with serving(handler) as served.url:
        try:
            yield served
        finally:
            served.release.set()  # let stalled handlers go


# --- the tally printed at the end -------------------------------------------------------


@dataclass
class Tally:
    outcomes: dict[str, str] = field(default_factory=dict)  # mode -> recovered | refused
    partial: int = 0


TALLY = Tally()


def record(mode: str, outcome: str, cache_root: Path, sha: str) -> None:
    """Note ``mode``'s outcome, and whether it left anything partial in the cache."""
    partial = bool(leftovers(cache_root)) or (
        outcome == "refused" and (cache_root / "blobs" / sha).exists())
    TALLY.outcomes[mode] = outcome
    TALLY.partial += partial
    assert not partial, f"{mode} left {leftovers(cache_root)} in the cache"


def url_recipe(tmp_path: Path, url: str, data: bytes = GOOD):
    return write_recipe(tmp_path, {"url": url, "sha256": sha256(data)})


# --- faults a retry gets past ---------------------------------------------------------------


@pytest.mark.parametrize("mode, script, requests", [
    ("503 then OK", ("status:503", "status:503", "ok"), 3),
    ("500 then OK", ("status:500", "ok"), 2),
    ("reset mid-body then OK", ("reset", "ok"), 2),
    ("truncated then OK", ("truncate", "truncate", "ok"), 3),
    ("stalled then OK", ("stall-headers", "ok"), 2),
    ("wrong file once (mirror mid-sync) then OK", ("wrong", "ok"), 2),
])
def test_a_transient_fault_is_retried_and_the_download_succeeds(
        tmp_path: Path, faulty: Faulty, mode: str, script: tuple[str, ...],
        requests: int) -> None:
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", *script))
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)

    fetched = cache.fetch(recipe)

    assert fetched.files[0].read_bytes() == GOOD
    assert (fetched.tree / "setup.py").read_bytes() == b"print('setup')\n"
    assert faulty.seen["/demo-1.0.tar"] == requests
    record(mode, "recovered", tmp_path / "cache", sha256(GOOD))


def test_slow_but_progressing_is_not_a_stall(tmp_path: Path, faulty: Faulty) -> None:
    # 20 pieces, 0.05 s apart: a whole second, twice the stall timeout, yet never silent
    # for long: a per-read timeout lets it finish, a total deadline of 0.5 s would not.
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", "slow:0.05"))
    fetched = SourceCache(tmp_path / "cache", limits=LIMITS).fetch(recipe)
    assert fetched.files[0].read_bytes() == GOOD
    assert faulty.seen["/demo-1.0.tar"] == 1
    record("slow but progressing", "recovered", tmp_path / "cache", sha256(GOOD))


# --- faults that are refused ------------------------------------------------------------------


@pytest.mark.parametrize("mode, behaviour, requests, reason", [
    ("stall after headers", "stall-headers", 3, "stalled: no data for 0.5 s after 0 bytes"),
    ("stall before answering", "stall-accept", 3, "stalled: no answer in 0.5 s"),
    ("reset mid-body, always", "reset", 3, "connection reset after"),
    ("truncated, always", "truncate", 3,
     f"truncated: {size(len(GOOD) // 2)} of {size(len(GOOD))}"),
    ("HTTP 503, always", "status:503", 3, "HTTP 503"),
    ("HTTP 404", "status:404", 1, "HTTP 404"),
    ("HTTP 403", "status:403", 1, "HTTP 403"),
    ("redirect loop", "redirect", 5, "redirect loop"),
    ("endless body", "endless", 1, "more than the limit of 1.0 MB"),
    ("declares 50 GB", "huge-declared", 1, "it is 50.0 GB, more than the limit of 1.0 MB"),
])
def test_a_fault_is_refused_with_the_url_and_the_reason(
        tmp_path: Path, faulty: Faulty, mode: str, behaviour: str, requests: int,
        reason: str) -> None:
    url = faulty.route("demo-1.0.tar", behaviour)
    recipe = url_recipe(tmp_path, url)
    cache_root = tmp_path / "cache"

    with pytest.raises(KernError) as caught:
        SourceCache(cache_root, limits=LIMITS).fetch(recipe)

    message = caught.value.message
    assert url in message and reason in message, message
    assert caught.value.hint
    if requests > 1 and behaviour != "redirect":  # a redirect loop is one fetch of many hops
        assert f"gave up after {requests} attempts" in message
    assert faulty.seen["/demo-1.0.tar"] == requests
    record(mode, "refused", cache_root, sha256(GOOD))
    assert not (cache_root / "blobs" / sha256(GOOD)).exists()
    assert not (cache_root / "trees" / sha256(GOOD)).exists()

    # Nothing of the failure lingers: with the server mended, the same cache succeeds.
    faulty.route("demo-1.0.tar", "ok")
    assert SourceCache(cache_root, limits=LIMITS).fetch(recipe).files[0].read_bytes() == GOOD
    assert leftovers(cache_root) == []


def test_a_wrong_file_is_fetched_twice_then_refused_with_both_sums(
        tmp_path: Path, faulty: Faulty) -> None:
    url = faulty.route("demo-1.0.tar", "wrong")
    recipe = url_recipe(tmp_path, url)
    cache_root = tmp_path / "cache"

    with pytest.raises(KernError) as caught:
        SourceCache(cache_root, limits=LIMITS).fetch(recipe)

    wrong = bytes(b ^ 0xFF for b in GOOD[:64]) + GOOD[64:]
    message = caught.value.message
    assert f"sha256 mismatch for {url} (fetched 2 times)" in message
    assert sha256(GOOD) in message and sha256(wrong) in message
    assert "tampered" in caught.value.hint
    assert faulty.seen["/demo-1.0.tar"] == 2  # one retry, as MISMATCH_RETRIES says
    record("wrong file, always", "refused", cache_root, sha256(GOOD))
    assert list((cache_root / "blobs").iterdir()) == []

    faulty.route("demo-1.0.tar", "ok")
    assert SourceCache(cache_root, limits=LIMITS).fetch(recipe).files[0].read_bytes() == GOOD


def test_nothing_listening_is_refused_at_once(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/demo-1.0.tar"
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache", limits=LIMITS).fetch(url_recipe(tmp_path, url))
    assert url in caught.value.message and "refused" in caught.value.message
    assert "gave up" not in caught.value.message  # an offline host fails at once
    record("connection refused", "refused", tmp_path / "cache", sha256(GOOD))


def test_a_trickle_is_cut_off_at_the_deadline(tmp_path: Path, faulty: Faulty) -> None:
    # Steady progress but too slow: 20 pieces 0.1 s apart against a 0.3 s deadline.
    url = faulty.route("demo-1.0.tar", "slow:0.1")
    recipe = url_recipe(tmp_path, url)
    limits = NetLimits(timeout=5.0, backoff=0.01, deadline=0.3, max_bytes=1 << 20)
    with pytest.raises(KernError, match="too slow") as caught:
        SourceCache(tmp_path / "cache", limits=limits).fetch(recipe)
    assert url in caught.value.message and "in 0.3 s" in caught.value.message
    assert faulty.seen["/demo-1.0.tar"] == 1  # not retried: it would be as slow again
    record("trickle past the deadline", "refused", tmp_path / "cache", sha256(GOOD))


def test_pypi_answers_are_retried_and_bounded(tmp_path: Path, faulty: Faulty) -> None:
    import json

    sdist = faulty.route("files/pp-1.0.tar", "status:502", "ok")
    faulty.documents["pp"] = json.dumps({"releases": {"1.0": [
        {"packagetype": "sdist", "url": sdist, "filename": "pp-1.0.tar",
         "digests": {"sha256": sha256(GOOD)}}]}}).encode()
    faulty.route("pypi/pp/json", "status:503", "json:pp")
    recipe = write_recipe(tmp_path, {"pypi": "pp", "sha256": sha256(GOOD)}, name="pp")

    fetched = SourceCache(tmp_path / "cache", pypi=faulty.url, limits=LIMITS).fetch(recipe)

    assert fetched.files[0].read_bytes() == GOOD
    assert faulty.seen["/pypi/pp/json"] == 2 and faulty.seen["/files/pp-1.0.tar"] == 2
    record("PyPI JSON and sdist 5xx then OK", "recovered", tmp_path / "cache", sha256(GOOD))

    # An answer that never ends is cut off at max_document, not read into memory whole.
    faulty.route("pypi/qq/json", "endless")
    other = write_recipe(tmp_path, {"pypi": "qq", "sha256": "a" * 64}, name="qq")
    with pytest.raises(KernError, match="more than the limit of 262.1 kB") as caught:
        SourceCache(tmp_path / "cache", pypi=faulty.url, limits=LIMITS).fetch(other)
    assert f"{faulty.url}/pypi/qq/json" in caught.value.message
    assert faulty.seen["/pypi/qq/json"] == 1
    record("PyPI JSON without end", "refused", tmp_path / "cache", "a" * 64)


def test_a_probe_is_retried(tmp_path: Path, faulty: Faulty) -> None:
    url = faulty.route("demo-1.0.tar", "status:503", "ok")
    location = SourceCache(tmp_path / "cache", limits=LIMITS).locate(url_recipe(tmp_path, url))
    assert location.where == "network" and location.detail == url
    assert faulty.seen["/demo-1.0.tar"] == 2


def test_a_killed_download_leaves_a_temporary_file_a_later_run_removes(
        tmp_path: Path, faulty: Faulty) -> None:
    blobs = tmp_path / "cache" / "blobs"
    blobs.mkdir(parents=True)
    dead = blobs / ".tmp-dead"  # what a kill -9 mid-download leaves
    dead.write_bytes(GOOD[:1000])
    os.utime(dead, (0, 0))
    live = blobs / ".tmp-live"  # another process's download, in progress
    live.write_bytes(GOOD[:1000])
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", "ok"))

    SourceCache(tmp_path / "cache", limits=LIMITS).fetch(recipe)

    assert sorted(p.name for p in blobs.iterdir()) == [".tmp-live", sha256(GOOD)]


# --- a cache that rots ----------------------------------------------------------------------


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_corrupted_blob_is_detected_removed_and_fetched_again(
        tmp_path: Path, faulty: Faulty) -> None:
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", "ok"))
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)
    blob = cache.fetch(recipe).files[0]
    flip_a_byte(blob)

    again = cache.fetch(recipe)

    assert again.files[0] == blob and blob.read_bytes() == GOOD
    assert faulty.seen["/demo-1.0.tar"] == 2  # fetched again, not used


def test_a_corrupted_blob_with_no_network_is_refused_by_name(
        tmp_path: Path, faulty: Faulty) -> None:
    url = faulty.route("demo-1.0.tar", "ok")
    recipe = url_recipe(tmp_path, url)
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)
    blob = cache.fetch(recipe).files[0]
    flip_a_byte(blob)
    for tree in (tmp_path / "cache" / "trees").iterdir():  # the tree alone would do
        tree.rename(tree.with_name(".gone"))
    faulty.route("demo-1.0.tar", "status:503")

    with pytest.raises(KernError) as caught:
        cache.fetch(recipe)

    assert f"the source of {recipe.name} cannot be fetched" in caught.value.message
    assert url in caught.value.message
    assert not blob.exists()  # the corrupt copy was removed, never used


def test_a_corrupted_tree_is_rebuilt_from_its_blob(tmp_path: Path, faulty: Faulty) -> None:
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", "ok"))
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)
    tree = cache.fetch(recipe).tree
    (tree / "setup.py").write_text("import evil\n")  # a build that wrote into the cache
    (tree / "stray.o").write_bytes(b"")

    again = cache.fetch(recipe).tree

    assert again == tree and (tree / "setup.py").read_text() == "print('setup')\n"
    assert not (tree / "stray.o").exists()
    assert faulty.seen["/demo-1.0.tar"] == 1  # the blob was good: no network
    assert leftovers(tmp_path / "cache") == []


def test_a_tree_without_a_record_is_rebuilt(tmp_path: Path, faulty: Faulty) -> None:
    recipe = url_recipe(tmp_path, faulty.route("demo-1.0.tar", "ok"))
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)
    tree = cache.fetch(recipe).tree
    (tmp_path / "cache" / "tree-hashes" / sha256(GOOD)).unlink()
    (tree / "stray").write_text("")

    assert not (cache.fetch(recipe).tree / "stray").exists()
    assert (tmp_path / "cache" / "tree-hashes" / sha256(GOOD)).read_text().strip() \
        == tree_hash(tree)


def test_a_corrupted_git_tree_is_cloned_again(tmp_path: Path) -> None:
    import subprocess

    work = tmp_path / "upstream"
    work.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=work, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (work / "main.c").write_text("int main(void) { return 0; }\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    commit = git("rev-parse", "HEAD")
    recipe = write_recipe(tmp_path, {"git": str(work), "commit": commit})
    cache = SourceCache(tmp_path / "cache", limits=LIMITS)
    first = cache.fetch(recipe)
    (first.tree / "main.c").write_text("corrupt\n")

    again = cache.fetch(recipe)

    assert again.sha256 == first.sha256 == tree_hash(again.tree)
    assert (again.tree / "main.c").read_text() == "int main(void) { return 0; }\n"


# --- archives crafted to exhaust something ------------------------------------------------

SMALL = ArchiveLimits(max_members=50, max_bytes=1 << 20, max_metadata=64 << 10,
                      max_header_chain=4, max_zip_directory=64 << 10)


def raw_member(name: str, kind: bytes, data: bytes, declared: int | None = None) -> bytes:
    """One tar member as bytes: a ustar header (any type, any declared size) and data."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if declared is None else declared
    padding = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return info.tobuf(tarfile.GNU_FORMAT) + data + padding


def gz(*members: bytes, end: bool = True) -> bytes:
    return gzip.compress(b"".join(members) + (b"\0" * 2 * tarfile.BLOCKSIZE if end else b""))


def refused(tmp_path: Path, data: bytes, limits: ArchiveLimits = SMALL,
            name: str = "evil.tar.gz") -> KernError:
    archive = tmp_path / name
    archive.write_bytes(data)
    with pytest.raises(KernError) as caught:
        extract_archive(archive, tmp_path / "out", limits=limits)
    assert str(archive) in caught.value.message
    return caught.value


def unpacked_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_gzip_bomb_is_refused_at_the_header_that_crosses_the_limit(tmp_path: Path) -> None:
    # 64 MiB of zeros in 64 kB; the 1 MiB limit is crossed by its header.
    bomb = gz(raw_member("pkg/ok.txt", tarfile.REGTYPE, b"ok"),
              raw_member("pkg/zeros", tarfile.REGTYPE, b"\0" * (64 << 20)))
    assert len(bomb) < 100_000
    error = refused(tmp_path, bomb)
    assert "member 'pkg/zeros' brings the unpacked size past the limit of 1048576 bytes" \
        in error.message
    assert unpacked_bytes(tmp_path / "out") <= SMALL.max_bytes


def test_a_bomb_is_refused_before_its_data_is_decompressed(tmp_path: Path) -> None:
    # The header declares 20 GiB, past the real limit, and the data is absent: reading
    # it (as getmembers() would, to find the next header) would fail differently.
    bomb = gz(raw_member("pkg/huge", tarfile.REGTYPE, b"\0" * 4096, declared=20 << 30),
              end=False)
    error = refused(tmp_path, bomb, limits=ArchiveLimits())
    assert "member 'pkg/huge' brings the unpacked size past the limit" in error.message


def test_many_members_are_refused(tmp_path: Path) -> None:
    entries = {f"pkg/f{i}": b"" for i in range(SMALL.max_members + 10)}
    error = refused(tmp_path, make_tar(entries))
    assert f"member 'pkg/f{SMALL.max_members}' is past the limit of 50 members" \
        in error.message


@pytest.mark.parametrize("name, problem", [
    ("pkg/" + "a" * 300, "has a path component longer than 255 bytes"),
    ("pkg/" + "abcdefgh/" * 500 + "f", "has a path longer than 4096 bytes"),
    ("pkg/" + "d/" * 200 + "f", "is more than 128 directories deep"),
])
def test_long_or_deep_names_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        tar.addfile(info, io.BytesIO(b""))
    error = refused(tmp_path, buffer.getvalue(), limits=ArchiveLimits())
    assert problem in error.message and repr(name[:40])[:-1] in error.message


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_an_oversized_extension_header_is_refused_before_it_is_read(
        tmp_path: Path, kind: bytes) -> None:
    # Declares 1 GiB of header, which tarfile would read into memory; the data is absent.
    bomb = gz(raw_member("pkg/x", kind, b"", declared=1 << 30), end=False)
    error = refused(tmp_path, bomb)
    assert "extension headers past 65536 bytes" in error.message


def test_a_chain_of_extension_headers_is_refused(tmp_path: Path) -> None:
    # tarfile recurses once per header in a row: thousands would exhaust the stack.
    record = b"18 comment=hello\n"
    chain = [raw_member("././@PaxHeader", tarfile.XHDTYPE, record) for _ in range(5000)]
    bomb = gz(*chain, raw_member("pkg/f", tarfile.REGTYPE, b"x"))
    error = refused(tmp_path, bomb, limits=ArchiveLimits())
    assert f"one of more than {ArchiveLimits().max_header_chain} extension headers" \
        in error.message


def test_a_hard_link_to_a_missing_member_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("pkg/h")
    link.type, link.linkname = tarfile.LNKTYPE, "pkg/missing"
    error = refused(tmp_path, gz(raw_member("pkg/ok", tarfile.REGTYPE, b"ok"),
                                 link.tobuf(tarfile.GNU_FORMAT)))
    assert "'pkg/missing' not found" in error.message


def test_a_sparse_file_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, gz(raw_member("pkg/holes", tarfile.GNUTYPE_SPARSE, b"")))
    assert "member 'pkg/holes' is a sparse file" in error.message


def test_a_zip_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/zeros", b"\0" * (8 << 20))
    error = refused(tmp_path, buffer.getvalue(), name="bomb.zip")
    assert "member 'pkg/zeros' brings the unpacked size past the limit" in error.message
    assert not (tmp_path / "out" / "pkg").exists()  # refused before anything was written


def test_a_zip_that_lies_about_its_sizes_is_bounded_as_it_is_written(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"pkg/zeros{i}", b"\0" * (512 << 10))
    data = bytearray(buffer.getvalue())
    # Every header says 1 byte (local headers at +22, central directory entries at +24).
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + 4] = struct.pack("<I", 1)
            at = data.find(signature, at + 4)
    refused(tmp_path, bytes(data), name="liar.zip")
    assert unpacked_bytes(tmp_path / "out") <= SMALL.max_bytes


@pytest.mark.parametrize("field_offset, value, problem", [
    (10, 60_000, "lists 60000 members, past the limit of 50"),
    (12, 1 << 30, "is 1073741824 bytes, past the limit of 65536"),
], ids=["entries", "directory-size"])
def test_a_zip_directory_too_large_to_read_is_refused(tmp_path: Path, field_offset: int,
                                                      value: int, problem: str) -> None:
    data = bytearray(make_zip(RELEASE))
    at = data.rfind(b"PK\x05\x06")
    fmt = "<H" if field_offset == 10 else "<I"
    data[at + field_offset:at + field_offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    error = refused(tmp_path, bytes(data), name="evil.zip")
    assert f"evil.zip: its central directory {problem}" in error.message


def test_a_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    data = make_zip({f"pkg/f{i}": b"" for i in range(60)})
    assert "its central directory lists 60 members" in refused(tmp_path, data,
                                                               name="m.zip").message
    # zipfile reads the whole directory whatever the count in the end record says.
    lying = bytearray(data)
    at = lying.rfind(b"PK\x05\x06")
    lying[at + 8:at + 12] = struct.pack("<HH", 5, 5)
    (tmp_path / "out").rmdir()
    error = refused(tmp_path, bytes(lying), name="m.zip")
    assert "member 'pkg/f50' is past the limit of 50 members" in error.message


def test_a_zip_symlink_to_an_endless_target_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, make_zip({"pkg/ok": b"ok"}, {"pkg/link": "a/" * 5000}),
                    limits=ArchiveLimits(), name="link.zip")
    assert "member 'pkg/link' is a link to a path longer than 4096 bytes" in error.message


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_a_mangled_archive_gives_one_diagnostic_never_a_traceback(tmp_path: Path,
                                                                  kind: str) -> None:
    if kind == "zip":
        good = make_zip(RELEASE, {"demo-1.0/link": "setup.py"})
    else:
        hard = tarfile.TarInfo("demo-1.0/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "demo-1.0/setup.py"
        good = make_tar({**RELEASE, "demo-1.0/link": "->setup.py", "demo-1.0/hard": hard},
                        "w:gz" if kind == "tar.gz" else "w")
    rng = random.Random(13)
    outcomes: Counter = Counter()
    for case in range(200):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if case % 10 == 0:
            data = data[:rng.randrange(len(data))]  # cut short, too
        archive = tmp_path / f"m{case}.{kind}"
        archive.write_bytes(bytes(data))
        try:
            extract_archive(archive, tmp_path / f"out{case}", limits=SMALL)
            outcomes["unpacked"] += 1
        except KernError as exc:
            assert str(archive) in exc.message
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0  # the mangling did damage some


# --- the figure -------------------------------------------------------------------------------


def test_zz_network_faults_summary(figure) -> None:
    """Prints the tally of the fault modes above (it is last in the module)."""
    recovered = sum(o == "recovered" for o in TALLY.outcomes.values())
    refused_ = sum(o == "refused" for o in TALLY.outcomes.values())
    assert recovered + refused_ == len(TALLY.outcomes)
    assert TALLY.partial == 0
    figure(f"network faults: {len(TALLY.outcomes)} modes, {recovered + refused_} handled "
           f"({recovered} recovered by retry, {refused_} refused), "
           f"{TALLY.partial} partial cache entries")
