"""The network, as the remote kinds see it: one way to open a URL, and its two failures."""

from __future__ import annotations

import http.client
import posixpath
import urllib.error
import urllib.parse
import urllib.request

from kernbuild import __version__
from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe

DEFAULT_TIMEOUT = 60.0  # seconds without progress on one socket operation
USER_AGENT = f"kernbuild/{__version__}"


class Unreachable(KernError):
    """The network did not deliver a file (any failure but a checksum mismatch)."""


class NotFound(Unreachable):
    """HTTP 404: lets callers try elsewhere or explain what is missing."""


def open_url(url: str, recipe: Recipe, method: str, timeout: float
             ) -> http.client.HTTPResponse:
    """Open ``url`` for reading, naming ``recipe``'s source in the hint of a failure.

    Raises:
        NotFound: HTTP 404 (callers turn it into a message of their own).
        Unreachable: any other failure, with the URL and a hint.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT}, method=method)
    hint = (f"check the network connection and the source in {recipe.path} "
            "(proxies are read from http_proxy/https_proxy)")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            raise NotFound(f"not found (HTTP 404): {url}",
                           f"check the source in {recipe.path}") from None
        raise Unreachable(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                          hint) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):  # file:// mirrors
            raise NotFound(f"not found: {url}", f"check the source in {recipe.path}") \
                from None
        raise Unreachable(f"cannot download {url}: {reason(exc.reason, timeout)}", hint) \
            from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unreachable(f"cannot download {url}: {reason(exc, timeout)}", hint) from None


def reason(exc: object, timeout: float) -> str:
    """``exc`` as the end of a message; a timeout says how long was waited."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    return str(exc) or type(exc).__name__


def content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, TypeError, ValueError):
        return None


def url_name(url: str) -> str:
    """The file name at the end of ``url``, unquoted; the URL itself if it has none."""
    return urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path)) or url
