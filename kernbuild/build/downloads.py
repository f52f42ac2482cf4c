"""The download cache: Debian packages fetched once, reused by every later build.

Why a caching HTTP proxy rather than a shared ``/var/cache/apt/archives``: image
builds run ``apt-get`` inside Dockerfile RUN steps of the legacy builder, which can
mount nothing, but every build (image or package) honours ``http_proxy``; and a
proxy keeps the cache out of the containers, so neither concurrent builds nor a
killed one can leave apt's own lock or half a file in it. Docker passes
``http_proxy`` as a predefined build argument, which is kept out of the layer
cache and of the rendered ``dockerfiles/``, so no host address is ever baked in.

What is cached: only files whose names are unique for their content: those under
a Debian archive's ``pool/`` (a new upload is a new version, a new name) and the
indexes apt fetches ``by-hash/SHA256/<their sha256>``. What names a moving state
(InRelease, Release, Packages by name) passes through, so apt always sees today's
archive and checks every file against its signed InRelease as usual. Each download is written to a
temporary file beside its place and renamed there only once it has all the bytes
the server announced: a reader, another kernbuild on the same cache, or a kernbuild
killed mid-download never sees or leaves a partial entry, and no lock is needed
(two builds that fetch one file at once both rename a whole copy). An entry that
apt refuses anyway (a disk error, an edit) is dropped by :meth:`DownloadProxy.drop`
from apt's "Failed to fetch URL" lines, and the caller runs apt once more, which
fetches it again.

The proxy is a thread of the kernbuild command, listening only on the Docker
bridge's gateway address (containers on that bridge reach it; the outside world
does not) for as long as the command builds. The cache lives under the state
directory (``downloads/``) or wherever ``KERNBUILD_DOWNLOAD_CACHE`` says, so many
state directories (a test session's, CI's) can share one.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

#: The environment variable that moves the download cache out of the state directory.
CACHE_ENV = "KERNBUILD_DOWNLOAD_CACHE"
#: Bytes of the largest file cached (CUDA's biggest .debs are under 2 GB); a larger one
#: passes through uncached.
MAX_FILE_BYTES = 8 * 1024**3
#: Seconds the proxy waits on the upstream server for one connect or read.
UPSTREAM_TIMEOUT = 60
#: Seconds an idle connection from apt is kept open.
CLIENT_TIMEOUT = 120
#: Seconds after which a download's temporary file is a leftover of a killed kernbuild (a
#: download in progress writes to its file at least every UPSTREAM_TIMEOUT seconds).
STALE_PARTIAL = 3600
#: Bytes copied at a time.
CHUNK = 1024 * 1024
#: Request headers passed upstream; the rest (Proxy-*, Connection) are the proxy's own.
FORWARDED = ("User-Agent", "Accept", "If-Modified-Since", "If-None-Match", "Range",
             "If-Range", "Cache-Control")
#: Response headers passed back to apt.
RETURNED = ("Content-Type", "Last-Modified", "ETag", "Content-Range", "Accept-Ranges",
            "Date", "Expires", "Cache-Control")
#: A segment of a URL path that may be part of a cache entry's name.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~%-]*$")
#: apt's line for a file it could not get or refused ("E: Failed to fetch URL  Hash Sum
#: mismatch", "File has unexpected size", ...), in apt 2 and 3 alike.
_FAILED = re.compile(r"Failed to fetch (http://\S+)")


def download_cache(state: Path) -> Path:
    """The download cache of the state directory ``state``, or ``KERNBUILD_DOWNLOAD_CACHE``."""
    moved = os.environ.get(CACHE_ENV, "").strip()
    return Path(moved) if moved else Path(state) / "downloads"


def cache_path(cache: Path, url: str) -> Path | None:
    """Where ``url``'s file is kept in ``cache``, or None if it is not cached (not an
    http URL of a Debian ``pool/`` file, or one with an odd path)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.query:
        return None
    segments = parts.path.split("/")[1:]
    immutable = "pool" in segments[:-1] or (len(segments) > 3 and segments[-3] == "by-hash")
    if not immutable or not all(_SEGMENT.match(s) for s in segments):
        return None
    host = parts.hostname + (f"_{parts.port}" if parts.port else "")
    return Path(cache, host, *segments)


@dataclass(frozen=True)
class Counts:
    """What the proxy did for one client (a container's address) or for all."""

    hits: int = 0  # served from the cache
    misses: int = 0  # fetched and cached
    passed: int = 0  # indexes and other files, not cacheable

    def __str__(self) -> str:
        return (f"download cache: {self.hits} from the cache, {self.misses} fetched into it, "
                f"{self.passed} passed through")


class DownloadProxy:
    """A caching HTTP proxy in a thread of this process; use it as a context manager."""

    def __init__(self, cache: Path, address: str) -> None:
        self.cache = Path(cache)
        self._lock = threading.Lock()
        self._counts: dict[str, Counter] = {}
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server((address, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name="kernbuild-download-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's URL, for ``http_proxy``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "DownloadProxy":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def counts(self, client: str | None = None) -> Counts:
        """What was done for ``client`` (an IP address), or for every client."""
        with self._lock:
            found = self._counts.get(client, Counter()) if client else \
                sum(self._counts.values(), Counter())
        return Counts(found["hit"], found["miss"], found["pass"])

    def count(self, client: str, what: str) -> None:
        with self._lock:
            self._counts.setdefault(client, Counter())[what] += 1

    def drop(self, apt_output: str) -> list[str]:
        """Remove the cache entries of the files apt says it could not fetch (refused
        for their hash or size, most likely); returns their URLs. Running apt again then
        fetches them anew."""
        dropped = []
        for url in dict.fromkeys(_FAILED.findall(apt_output)):
            path = cache_path(self.cache, url)
            if path is not None and path.is_file():
                path.unlink(missing_ok=True)
                dropped.append(url)
        return dropped


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A connection apt dropped: its end, not a traceback on kernbuild's output."""


class _Handler(BaseHTTPRequestHandler):
    """One apt connection: GET of absolute URLs, keep-alive, as apt talks to a proxy."""

    owner: DownloadProxy
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT

    def log_message(self, *_args) -> None:  # apt logs what it fetched; stay quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        if self._absolute():
            self._forward(head=True)

    def do_GET(self) -> None:  # noqa: N802
        if not self._absolute():
            return
        entry = cache_path(self.owner.cache, self.path)
        if entry is not None and "Range" not in self.headers:
            if self._serve_file(entry):
                return
            self._forward(entry=entry)
        else:
            self._forward()

    def _absolute(self) -> bool:
        """Whether the request names an absolute http:// URL, as apt asks a proxy; if
        not, it is refused."""
        parts = urlsplit(self.path)
        if parts.scheme == "http" and parts.hostname:
            return True
        self._refuse(400, "only absolute http:// URLs are proxied")
        return False

    def _refuse(self, status: int, why: str) -> None:
        body = why.encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve_file(self, entry: Path) -> bool:
        try:
            handle = entry.open("rb")
        except OSError:
            return False
        with handle:
            self.owner.count(self.client_address[0], "hit")
            self.send_response(200)
            self.send_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            shutil.copyfileobj(handle, self.wfile, CHUNK)
        return True

    def _forward(self, entry: Path | None = None, head: bool = False) -> None:
        """Fetch from upstream and pass it on; with ``entry``, keep a whole 200 there."""
        parts = urlsplit(self.path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request("HEAD" if head else "GET", target, headers={
                name: self.headers[name] for name in FORWARDED if name in self.headers})
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            upstream.close()
            self._refuse(502, f"kernbuild's download proxy could not reach {parts.hostname}: "
                              f"{exc}")
            return
        try:
            self._relay(response, entry if response.status == 200 and not head else None, head)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, entry: Path | None,
               head: bool) -> None:
        length = response.getheader("Content-Length")
        size = int(length) if length and length.isdigit() else None
        self.send_response(response.status, response.reason)
        for name in RETURNED:
            if response.getheader(name):
                self.send_header(name, response.getheader(name))
        if size is not None:
            self.send_header("Content-Length", str(size))
        elif not head:
            self.close_connection = True  # the end of the body is the end of the connection
            self.send_header("Connection", "close")
        self.end_headers()
        if head or response.status in (204, 304):
            return
        keep = entry is not None and size is not None and size <= MAX_FILE_BYTES
        self.owner.count(self.client_address[0], "miss" if keep else "pass")
        partial = _Partial(entry) if keep else None
        copied = 0
        try:
            while chunk := response.read(CHUNK):
                copied += len(chunk)
                if partial is not None:
                    partial.write(chunk)
                    if copied == size:  # in place before apt has the last byte
                        partial.commit()
                self.wfile.write(chunk)
            if size is not None and copied != size:
                self.close_connection = True  # cut short upstream: apt must see it cut short
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # apt retries or fails the file; never cached
        finally:
            if partial is not None:
                partial.discard()


class _Partial:
    """A download on its way into the cache: a temporary file beside its entry, renamed
    into place whole by :meth:`commit` or removed. A write that fails (a full disk)
    stops the caching, never the download."""

    def __init__(self, entry: Path) -> None:
        self.entry = entry
        self._file = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.NamedTemporaryFile(
                dir=entry.parent, prefix=f".{entry.name}.", suffix=".part", delete=False)
        except OSError:
            self._file = None

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            return
        try:
            self._file.write(chunk)
        except OSError:
            self.discard()

    def commit(self) -> None:
        """Rename the finished file into place (called once it has every byte)."""
        if self._file is None:
            return
        try:
            self._file.close()
            os.chmod(self._file.name, 0o644)
            os.replace(self._file.name, self.entry)
            self._file = None
        except OSError:
            self.discard()

    def discard(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError:
            pass
        Path(self._file.name).unlink(missing_ok=True)
        self._file = None


def bridge_gateway(client, network: str = "bridge") -> str | None:
    """The host's address on a Docker network (its gateway), where containers on it reach
    a server of this process; None if the engine does not say (a remote engine, say)."""
    try:
        configs = client.networks.get(network).attrs["IPAM"]["Config"] or []
    except Exception:  # noqa: BLE001 - any engine answer without it means "no gateway"
        return None
    for config in configs:
        if ":" in config.get("Subnet", ":"):
            continue  # IPv6
        # The default bridge's config may name no gateway: the engine gives it the
        # subnet's first address (if not, binding to that fails and no proxy is used).
        return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])
    return None


def open_proxy(cache: Path, address: str | None) -> DownloadProxy | None:
    """A :class:`DownloadProxy` listening on ``address``, to start with ``with``; None
    where that address is not this host's (a remote engine): builds then download
    directly, as before."""
    if address is None:
        return None
    try:
        proxy = DownloadProxy(cache, address)
    except OSError:
        return None
    remove_stale_partials(cache)
    return proxy


def remove_stale_partials(cache: Path, now: float | None = None) -> list[Path]:
    """Remove the temporary files of downloads that stopped (their kernbuild was killed)
    more than :data:`STALE_PARTIAL` seconds ago; returns them."""
    limit = (time.time() if now is None else now) - STALE_PARTIAL
    removed = []
    for path in Path(cache).rglob(".*.part"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed.append(path)
        except OSError:
            pass  # renamed into place or removed by its writer meanwhile
    return removed


class ProxyOnDemand:
    """The download proxy of one command, started at its first build (a command whose
    builds are all cached starts none) and stopped by :meth:`close`."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._proxy: DownloadProxy | None = None
        self._started = False

    def get(self, client) -> DownloadProxy | None:
        """The proxy, listening on the default bridge's gateway; None where it cannot."""
        with self._lock:
            if not self._started:
                self._started = True
                self._proxy = open_proxy(self.cache, bridge_gateway(client))
                if self._proxy is not None:
                    self._proxy.__enter__()
            return self._proxy

    def close(self) -> None:
        with self._lock:
            if self._proxy is not None:
                self._proxy.__exit__(None, None, None)
            self._proxy, self._started = None, False
