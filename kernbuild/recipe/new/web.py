"""The network, for ``kernbuild new``: HTTP GETs, and reading what they bring.

:class:`Web` is the only code of the package that opens a URL, so that every
download carries kernbuild's User-Agent and every network failure becomes a
:class:`~kernbuild.errors.KernError` that says what to do; a missing file is
:class:`NotFound`, which callers turn into what is missing (a project, a release,
a distribution). The sdist, the .debian.tar and dh-python's .deb are all tarballs,
hence :func:`tar_read` and :data:`MAX_TEXT` here, beside the download.
"""

from __future__ import annotations

import io
import tarfile
from typing import IO

from kernbuild.sources.http import (
    NetLimits, NotFound, open_once, retrying, stream,
)

MAX_TEXT = 1 << 20  # bytes read of any one metadata file of a downloaded archive
_HINT = "check the network connection (proxies are read from http_proxy/https_proxy)"

__all__ = ["MAX_TEXT", "NotFound", "Web", "tar_read"]


class Web:
    """HTTP GETs with kernbuild's User-Agent: the only place here that touches the network.

    Opening, reading and retrying are :mod:`kernbuild.sources.http`'s, with its
    limits: a stall, a reset or a 5xx is retried, a body is bounded (in memory
    by ``max_document``, on disk by ``max_bytes``).
    """

    def __init__(self, timeout: float, limits: NetLimits | None = None) -> None:
        self.limits = limits or NetLimits(timeout=timeout)
        self.timeout = self.limits.timeout

    def read(self, url: str) -> bytes:
        """The body of ``url``, at most ``limits.max_document`` bytes of it."""
        def attempt(number: int) -> bytes:
            out = io.BytesIO()
            self._stream(url, out, self.limits.max_document)
            return out.getvalue()

        return retrying(self.limits, attempt)

    def download(self, url: str, out: IO[bytes]) -> str:
        """Stream ``url`` into ``out`` (a seekable file: a retry starts it over); its sha256."""
        def attempt(number: int) -> str:
            out.seek(0)
            out.truncate()
            return self._stream(url, out, self.limits.max_bytes)

        return retrying(self.limits, attempt)

    def _stream(self, url: str, out: IO[bytes], max_bytes: int) -> str:
        with open_once(url, "GET", self.timeout, hint=_HINT) as response:
            return stream(response, url, out, self.limits, lambda done, total: None,
                          max_bytes=max_bytes, hint=_HINT)


def tar_read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle else b""
