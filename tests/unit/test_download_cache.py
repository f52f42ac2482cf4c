"""The download cache's proxy, against a local stand-in for Debian's archive."""

from __future__ import annotations

import http.client
import os
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kernbuild.build import downloads
from kernbuild.build.downloads import DownloadProxy, cache_path, download_cache
from tests.localhttp import serving

DEB = b"!<arch>\n" + bytes(range(256)) * 400
FILES = {
    "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb": DEB,
    "/debian/dists/trixie/InRelease": b"signed index",
    "/debian/dists/trixie/main/binary-amd64/by-hash/SHA256/" + "ab" * 32: b"Packages",
}


class Archive(BaseHTTPRequestHandler):
    """Serves FILES and counts requests by path."""

    protocol_version = "HTTP/1.1"
    requests: list[str] = []
    cut_short = False  # send half the body, then hang up

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests.append(self.path)
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.cut_short else body)
        if self.cut_short:
            self.close_connection = True


@pytest.fixture
def archive():
    Archive.requests = []
    Archive.cut_short = False
    with serving(Archive) as url:
        yield url


def fetch(proxy: DownloadProxy, url: str) -> tuple[int, bytes]:
    """GET ``url`` through ``proxy`` as apt does: the absolute URL in the request line."""
    where = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_pool_file_is_fetched_once_then_served_from_the_cache(archive, tmp_path):
    url = archive + "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        assert fetch(proxy, url) == (200, DEB)
        assert fetch(proxy, url) == (200, DEB)
        assert proxy.counts("127.0.0.1") == downloads.Counts(hits=1, misses=1)
    assert Archive.requests.count(urlsplit(url).path) == 1
    assert cache_path(tmp_path, url).read_bytes() == DEB


def test_indexes_pass_through_uncached(archive, tmp_path):
    url = archive + "/debian/dists/trixie/InRelease"
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        assert fetch(proxy, url) == (200, b"signed index")
        assert fetch(proxy, url) == (200, b"signed index")
        assert proxy.counts() == downloads.Counts(passed=2)
    assert Archive.requests.count("/debian/dists/trixie/InRelease") == 2
    assert cache_path(tmp_path, url) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_download_cut_short_leaves_nothing_in_the_cache(archive, tmp_path):
    url = archive + "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
    Archive.cut_short = True
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        with pytest.raises(http.client.IncompleteRead):
            fetch(proxy, url)
        Archive.cut_short = False
        assert fetch(proxy, url) == (200, DEB)  # fetched again, whole
    assert Archive.requests.count(urlsplit(url).path) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["hello_2.10-3_amd64.deb"]


def test_an_entry_apt_refuses_is_dropped_and_fetched_again(archive, tmp_path):
    url = archive + "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        fetch(proxy, url)
        cache_path(tmp_path, url).write_bytes(b"bit rot")
        assert fetch(proxy, url) == (200, b"bit rot")  # the proxy checks nothing: apt does
        apt = (f"Err:1 {url}\n  Hash Sum mismatch\n"
               f"E: Failed to fetch {url}  Hash Sum mismatch\n"
               "   Hashes of expected file:\n")
        assert proxy.drop(apt) == [url]
        assert proxy.drop(apt) == []  # nothing left to drop
        assert fetch(proxy, url) == (200, DEB)
    assert cache_path(tmp_path, url).read_bytes() == DEB


def test_concurrent_fetches_of_one_file_all_get_it_whole(archive, tmp_path):
    url = archive + "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
    results = []
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        threads = [threading.Thread(target=lambda: results.append(fetch(proxy, url)))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [(200, DEB)] * 4
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["hello_2.10-3_amd64.deb"]


def test_a_request_that_names_no_server_is_refused(tmp_path):
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        assert fetch(proxy, "/debian/pool/main/h/hello_1_all.deb")[0] == 400


def test_an_unreachable_archive_is_a_502(tmp_path):
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        status, body = fetch(proxy, "http://127.0.0.1:9/debian/pool/main/x/x_1_all.deb")
    assert status == 502 and b"could not reach" in body


def test_an_index_by_hash_is_cached(archive, tmp_path):
    url = archive + "/debian/dists/trixie/main/binary-amd64/by-hash/SHA256/" + "ab" * 32
    with DownloadProxy(tmp_path, "127.0.0.1") as proxy:
        assert fetch(proxy, url) == fetch(proxy, url) == (200, b"Packages")
        assert proxy.counts() == downloads.Counts(hits=1, misses=1)


@pytest.mark.parametrize("url", [
    "http://deb.debian.org/debian/dists/trixie/main/binary-amd64/Packages.xz",
    "http://deb.debian.org/debian/dists/trixie/InRelease",
    "http://deb.debian.org/debian/pool/../../etc/passwd",
    "http://deb.debian.org/debian/pool/main/h/.hidden.deb",
    "http://deb.debian.org/debian/pool/main/h/hello.deb?x=1",
    "https://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
])
def test_only_plain_pool_files_have_a_cache_entry(url):
    assert cache_path(Path("/c"), url) is None


def test_the_cache_moves_with_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(downloads.CACHE_ENV, raising=False)
    assert download_cache(tmp_path) == tmp_path / "downloads"
    monkeypatch.setenv(downloads.CACHE_ENV, str(tmp_path / "shared"))
    assert download_cache(tmp_path / "state") == tmp_path / "shared"


def test_only_stale_partial_downloads_are_removed(tmp_path):
    folder = tmp_path / "deb.debian.org" / "debian" / "pool" / "main" / "h"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".hello_1_all.deb.x1.part", folder / ".hello_1_all.deb.x2.part"
    entry = folder / "hello_1_all.deb"
    for path in (stale, fresh, entry):
        path.write_bytes(b"x")
    old = stale.stat().st_mtime - downloads.STALE_PARTIAL - 1
    os.utime(stale, (old, old))
    os.utime(entry, (old, old))
    assert downloads.remove_stale_partials(tmp_path) == [stale]
    assert fresh.exists() and entry.exists()
