"""The network, as the remote kinds see it: one way to open a URL, one way to read a body,
one retry policy, and the limits that keep a misbehaving server from hanging kernbuild or
filling its memory or disk.

Limits (per URL; every one is a constant here and a field of :class:`NetLimits`):

- :data:`STALL_TIMEOUT`: seconds one socket operation (connect, send, one read) may
  wait for a byte. It is not a deadline: a slow download that keeps making
  progress is never killed by it.
- :data:`DOWNLOAD_DEADLINE`: seconds one attempt may take in all, however steadily
  it progresses; it bounds a server that trickles a byte at a time.
- :data:`ATTEMPTS` and :data:`BACKOFF`: a failure that may pass (a stall, a reset
  or truncated body, HTTP 408/429/5xx) is tried again, up to ATTEMPTS tries in
  all, waiting BACKOFF, then twice as long, between them. Nothing else is
  retried: a 404 or another 4xx, a redirect loop, a body over a size limit, a
  bad certificate, an unknown host name, a refused connection or a local
  (``file://``) failure will not change soon.
- :data:`MISMATCH_RETRIES`: a file whose sha256 differs from its pin is fetched
  again this many times (a mirror mid-sync briefly serves the old file), then
  refused with both sums.
- :data:`MAX_DOWNLOAD_BYTES`: the largest file downloaded to disk;
  :data:`MAX_DOCUMENT_BYTES`: the largest answer read into memory (PyPI's JSON).
  A body is counted as it arrives, so a server that sends more than it declared,
  or never stops, is cut off at the limit.
- :data:`MAX_REDIRECTS`: redirects followed for one URL.
"""

from __future__ import annotations

import hashlib
import http.client
import posixpath
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from kernbuild import __version__
from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe

STALL_TIMEOUT = 30.0  # seconds without progress on one socket operation
DEFAULT_TIMEOUT = STALL_TIMEOUT  # the name callers (SourceCache, kernbuild new) know it by
DOWNLOAD_DEADLINE = 4 * 3600.0  # seconds of one attempt: 8 GB at 0.6 MB/s
ATTEMPTS = 3  # tries in all of one URL, for failures that may pass
BACKOFF = 2.0  # seconds before the second try; doubled before each further one
MISMATCH_RETRIES = 1  # extra tries of a file whose sha256 is wrong
MAX_DOWNLOAD_BYTES = 8 << 30  # bytes of one file; CUDA's orig tarballs are about 4 GB
MAX_DOCUMENT_BYTES = 64 << 20  # bytes of one answer held in memory; PyPI's JSON: < 5 MB
MAX_REDIRECTS = 10  # as browsers and urllib do
USER_AGENT = f"kernbuild/{__version__}"

_CHUNK = 1 << 18
# HTTP statuses that say "not now" rather than "no": worth another try.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class NetLimits:
    """The limits above, as one value a :class:`SourceCache` is given (tests shrink them)."""

    timeout: float = STALL_TIMEOUT
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF
    mismatch_retries: int = MISMATCH_RETRIES
    max_bytes: int = MAX_DOWNLOAD_BYTES
    max_document: int = MAX_DOCUMENT_BYTES
    deadline: float = DOWNLOAD_DEADLINE

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.backoff * 2 ** (attempt - 1)


class Unreachable(KernError):
    """The network did not deliver a file (any failure but a checksum mismatch).

    ``transient``: whether another attempt may succeed (a stall, a reset, a 503).
    """

    def __init__(self, message: str, hint: str = "", *, transient: bool = False) -> None:
        super().__init__(message, hint)
        self.transient = transient


class NotFound(Unreachable):
    """HTTP 404 (or a missing ``file://`` path): lets callers try elsewhere or explain
    what is missing. Never transient."""


T = TypeVar("T")


def retrying(limits: NetLimits, attempt: Callable[[int], T],
             sleep: Callable[[float], None] = time.sleep) -> T:
    """``attempt(number)`` until it returns, fails for good, or ``limits.attempts`` are spent.

    A transient :class:`Unreachable` is retried after :meth:`NetLimits.pause`;
    the last failure is raised, saying how many attempts were made.
    """
    number = 1
    while True:
        try:
            return attempt(number)
        except Unreachable as exc:
            if not exc.transient or number >= limits.attempts:
                if number == 1:
                    raise
                raise type(exc)(f"{exc.message} (gave up after {number} attempts)", exc.hint,
                                transient=exc.transient) from None
        sleep(limits.pause(number))
        number += 1


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS
    max_repeats = 4  # visits of one URL: a loop is given up on at the fifth request


def open_url(url: str, recipe: Recipe, method: str, timeout: float
             ) -> http.client.HTTPResponse:
    """Open ``url`` for reading (one attempt), naming ``recipe``'s source in the hint of a
    failure; as :func:`open_once`."""
    return open_once(url, method, timeout, hint=network_hint(recipe),
                     missing_hint=f"check the source in {recipe.path}")


def open_once(url: str, method: str, timeout: float, *, hint: str, missing_hint: str = ""
              ) -> http.client.HTTPResponse:
    """Open ``url`` for reading (one attempt). ``timeout`` applies to each socket
    operation, not to the whole request.

    Raises:
        NotFound: HTTP 404 or 410 (callers turn it into a message of their own),
            with ``missing_hint``.
        Unreachable: any other failure, with the URL, the reason and ``hint``;
            ``transient`` when another attempt may succeed.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT}, method=method)
    local = url.startswith("file:")  # a source mirror: nothing will change on a retry
    try:
        # build_opener keeps urlopen's handlers (proxies from the environment included).
        return urllib.request.build_opener(_Redirects).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (404, 410):
            raise NotFound(f"not found (HTTP {exc.code}): {url}", missing_hint) from None
        if 300 <= exc.code < 400:  # urllib gives up on a loop or too many hops
            raise Unreachable(f"cannot download {url}: a redirect loop, or more than "
                              f"{MAX_REDIRECTS} redirects (HTTP {exc.code})", hint) from None
        raise Unreachable(f"cannot download {url}: HTTP {exc.code} {exc.reason}", hint,
                          transient=exc.code in _TRANSIENT_STATUS) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):  # file:// mirrors
            raise NotFound(f"not found: {url}", missing_hint) from None
        raise Unreachable(f"cannot download {url}: {reason(exc.reason, timeout)}", hint,
                          transient=not local and _transient(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:  # while reading the status line
        raise Unreachable(f"cannot download {url}: {reason(exc, timeout)}", hint,
                          transient=not local and _transient(exc)) from None
    except ValueError as exc:  # a malformed URL
        raise Unreachable(f"cannot download {url}: {exc}", hint) from None


def stream(response: http.client.HTTPResponse, url: str, out: BinaryIO, limits: NetLimits,
           report: Callable[[int, int | None], None], *, max_bytes: int | None = None,
           hint: str = "") -> str:
    """Copy the body of ``response`` into ``out``; its sha256, as hex.

    Reads one socket read at a time, so that a stall is seen within
    ``limits.timeout`` and the size and deadline are checked as bytes arrive.

    Raises:
        Unreachable: the body stalled, was cut off or is shorter than its
            Content-Length (transient); it exceeds ``max_bytes`` (default
            ``limits.max_bytes``) or ``limits.deadline`` (not transient).
    """
    limit = limits.max_bytes if max_bytes is None else max_bytes
    total = content_length(response)
    hint = hint or "try again later; check the network connection"
    if total is not None and total > limit:  # refuse before reading a byte of it
        raise Unreachable(f"cannot download {url}: it is {size(total)}, more than the limit "
                          f"of {size(limit)}", hint)
    read = getattr(response, "read1", response.read)  # read1: one socket read, not many
    digest, done, start = hashlib.sha256(), 0, time.monotonic()
    report(done, total)
    while True:
        try:
            chunk = read(_CHUNK)
        except TimeoutError:
            raise Unreachable(f"cannot download {url}: stalled: no data for "
                              f"{limits.timeout:g} s after {_progress(done, total)}", hint,
                              transient=True) from None
        except http.client.IncompleteRead:  # a chunked body that ended early
            raise Unreachable(f"cannot download {url}: truncated after "
                              f"{_progress(done, total)}", hint, transient=True) from None
        except (OSError, http.client.HTTPException) as exc:
            what = ("connection reset" if isinstance(exc, ConnectionError)
                    else str(exc) or type(exc).__name__)
            raise Unreachable(f"cannot download {url}: {what} after {_progress(done, total)}",
                              hint, transient=True) from None
        if not chunk:
            break
        done += len(chunk)
        if done > limit:  # more than declared, or no end at all
            raise Unreachable(f"cannot download {url}: more than the limit of {size(limit)}"
                              + (f" (it declared {size(total)})" if total else ""), hint)
        out.write(chunk)
        digest.update(chunk)
        report(done, total)
        if time.monotonic() - start > limits.deadline:
            raise Unreachable(f"cannot download {url}: too slow: {_progress(done, total)} in "
                              f"{limits.deadline:g} s", hint)
    if total is not None and done < total:  # the server closed the connection early
        raise Unreachable(f"cannot download {url}: truncated: {_progress(done, total)}", hint,
                          transient=True)
    return digest.hexdigest()


def network_hint(recipe: Recipe) -> str:
    return (f"check the network connection and the source in {recipe.path} "
            "(proxies are read from http_proxy/https_proxy)")


def reason(exc: object, timeout: float) -> str:
    """``exc`` as the end of a message; a timeout says how long was waited."""
    if isinstance(exc, TimeoutError):
        return f"stalled: no answer in {timeout:g} s"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(exc) or type(exc).__name__


def _transient(exc: object) -> bool:
    """Whether a failure to connect or to get an answer may pass.

    A server that was reached and then stalled, reset or hung up may do better
    next time. No answer to a name lookup, a refused connection (nothing
    listens) or a wrong certificate says this host cannot get there at all: an
    offline machine must fail at once, not after every retry of every source.
    """
    if isinstance(exc, (ssl.SSLCertVerificationError, socket.gaierror,
                        ConnectionRefusedError)):
        return False
    return isinstance(exc, (OSError, http.client.HTTPException))


def content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        length = int(response.headers["Content-Length"])
    except (KeyError, TypeError, ValueError):
        return None
    return length if length >= 0 else None


def size(count: int) -> str:
    """A byte count for people: 512 bytes, 3.4 kB, 1.2 MB, 8.6 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _progress(done: int, total: int | None) -> str:
    return f"{size(done)} of {size(total)}" if total is not None else size(done)


def url_name(url: str) -> str:
    """The file name at the end of ``url``, unquoted; the URL itself if it has none."""
    return urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path)) or url
