"""The network, for ``kernbuild new``: HTTP GETs, and reading what they bring.

:class:`Web` is the only code of the package that opens a URL, so that every
download carries kernbuild's User-Agent and every network failure becomes a
:class:`~kernbuild.errors.KernError` that says what to do; a missing file is
:class:`NotFound`, which callers turn into what is missing (a project, a release,
a distribution). The sdist, the .debian.tar and dh-python's .deb are all tarballs,
hence :func:`tar_read` and :data:`MAX_TEXT` here, beside the download.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import tarfile
import urllib.error
import urllib.request
from typing import IO

from kernbuild.errors import KernError
from kernbuild.sources import USER_AGENT

_CHUNK = 1 << 18
MAX_TEXT = 1 << 20  # bytes read of any one metadata file of a downloaded archive


class NotFound(KernError):
    """HTTP 404 (or a missing file:// path): callers say what is missing."""


class Web:
    """HTTP GETs with kernbuild's User-Agent: the only place here that touches the network."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _open(self, url: str) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        hint = "check the network connection (proxies are read from http_proxy/https_proxy)"
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise NotFound(f"not found (HTTP 404): {url}") from None
            raise KernError(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                            hint) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):
                raise NotFound(f"not found: {url}") from None
            raise KernError(f"cannot download {url}: {exc.reason}", hint) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KernError(f"cannot download {url}: {exc}", hint) from None

    def read(self, url: str) -> bytes:
        out = io.BytesIO()
        self.download(url, out)
        return out.getvalue()

    def download(self, url: str, out: IO[bytes]) -> str:
        """Stream ``url`` into ``out``; its sha256, as hex."""
        digest = hashlib.sha256()
        with self._open(url) as response:
            try:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise KernError(f"download of {url} failed: {exc}",
                                "try again; check the network connection") from None
        return digest.hexdigest()


def tar_read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle else b""
