"""Licence names and texts as SPDX ids, for ``kernbuild new``.

Upstream metadata names a licence in free text (``License: BSD``), as a trove
classifier or only by the text of a license file; debian/copyright names it in
DEP-5's words. A recipe needs an SPDX id, so each recognised name comes with why
it needs checking, if it does ("BSD" does not say which BSD licence): the caller
writes that as a TODO. This module is mostly that table.
"""

from __future__ import annotations

import re

from kernbuild.debian import DEP5_LICENSES

# A placeholder SPDX allows (a LicenseRef-), so that the recipe lints; a TODO says why.
UNKNOWN_LICENSE = "LicenseRef-unknown"

_ONLY_OR_LATER = ("which does not say 'only' or 'or later': check the source files' "
                  "headers for 'or (at your option) any later version'")

# License names as PyPI metadata writes them (free text and classifiers, lower-case,
# runs of punctuation as one space) -> (SPDX id, why it needs checking or "").
_LICENSE_NAMES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("mit", "mit license", "the mit license", "expat"), ("MIT", "")),
    **dict.fromkeys(("apache 2 0", "apache 2", "apache2", "apache license 2 0",
                     "apache license version 2 0", "apache software license 2 0"),
                    ("Apache-2.0", "")),
    **dict.fromkeys(("apache", "apache license", "apache software license"),
                    ("Apache-2.0", "which names no version of the Apache license")),
    **dict.fromkeys(("bsd 3 clause", "3 clause bsd", "bsd 3 clause license", "new bsd",
                     "new bsd license", "modified bsd", "modified bsd license", "bsd 3"),
                    ("BSD-3-Clause", "")),
    **dict.fromkeys(("bsd 2 clause", "2 clause bsd", "bsd 2 clause license", "simplified bsd",
                     "freebsd", "bsd 2"), ("BSD-2-Clause", "")),
    **dict.fromkeys(("bsd", "bsd license"),
                    ("BSD-3-Clause", "which does not say which BSD license: check the "
                                     "license file")),
    **dict.fromkeys(("gplv3+", "gpl 3+", "gpl 3 0+", "gpl v3+", "gpl 3 0 or later",
                     "gnu general public license v3 or later gplv3+"),
                    ("GPL-3.0-or-later", "")),
    **dict.fromkeys(("gplv3", "gpl 3", "gpl v3", "gpl3", "gpl 3 0", "gpl 3 0 only",
                     "gnu general public license v3 gplv3"),
                    ("GPL-3.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("gplv2+", "gpl 2+", "gpl 2 0+", "gpl v2+", "gpl 2 0 or later",
                     "gnu general public license v2 or later gplv2+"),
                    ("GPL-2.0-or-later", "")),
    **dict.fromkeys(("gplv2", "gpl 2", "gpl v2", "gpl2", "gpl 2 0",
                     "gnu general public license v2 gplv2"), ("GPL-2.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("lgplv3+", "lgpl 3+", "lgpl 3 0+", "lgpl 3 0 or later",
                     "gnu lesser general public license v3 or later lgplv3+"),
                    ("LGPL-3.0-or-later", "")),
    **dict.fromkeys(("lgplv3", "lgpl 3", "lgpl 3 0", "gnu lesser general public license v3 "
                     "lgplv3"), ("LGPL-3.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("lgpl 2 1+", "lgpl 2 1 or later"), ("LGPL-2.1-or-later", "")),
    **dict.fromkeys(("lgplv2+", "gnu lesser general public license v2 or later lgplv2+"),
                    ("LGPL-2.0-or-later", "")),
    **dict.fromkeys(("lgpl 2 1", "lgplv2 1", "gnu lesser general public license v2 lgplv2"),
                    ("LGPL-2.1-only", _ONLY_OR_LATER)),
    "gnu affero general public license v3 or later agplv3+": ("AGPL-3.0-or-later", ""),
    "gnu affero general public license v3": ("AGPL-3.0-only", _ONLY_OR_LATER),
    **dict.fromkeys(("mpl 2 0", "mpl2", "mozilla public license 2 0 mpl 2 0"), ("MPL-2.0", "")),
    **dict.fromkeys(("isc", "isc license", "isc license iscl"), ("ISC", "")),
    **dict.fromkeys(("unlicense", "the unlicense unlicense"), ("Unlicense", "")),
    **dict.fromkeys(("psf", "python software foundation license"), ("PSF-2.0", "")),
    "boost software license 1 0 bsl 1 0": ("BSL-1.0", ""),
    "zlib libpng license": ("Zlib", ""),
    "cc0 1 0 universal cc0 1 0 public domain dedication": ("CC0-1.0", ""),
}
# SPDX ids as they are, any case: the common ones, and those DEP-5 names map to.
_SPDX = {spdx.lower(): spdx for spdx, _ in _LICENSE_NAMES.values()}
# debian/copyright's DEP-5 names -> SPDX (the reverse of what kernbuild renders).
FROM_DEP5 = {dep5.lower(): spdx for spdx, dep5 in DEP5_LICENSES.items()}


def license_named(name: str) -> tuple[str, str] | None:
    """(SPDX id, why it needs checking) for a license's name or classifier, or None."""
    name = re.sub(r"^license\s*::\s*(osi approved\s*::\s*)?", "", name.strip(), flags=re.I)
    if name.lower() in _SPDX:
        return _SPDX[name.lower()], ""
    return _LICENSE_NAMES.get(re.sub(r"[^a-z0-9+]+", " ", name.lower()).strip())


def license_in_text(text: str) -> tuple[str, str] | None:
    """(SPDX id, why it needs checking) for a license's full text, or None."""
    head = " ".join(text.split()[:200]).lower()
    for title, spdx in (("gnu affero general public license", "AGPL"),
                        ("gnu lesser general public license", "LGPL"),
                        ("gnu general public license", "GPL")):
        if title in head:
            number = re.search(r"version (\d(?:\.\d)?)", head)
            if number is None:
                return None
            version = {"2": "2.0", "3": "3.0"}.get(number.group(1), number.group(1))
            return f"{spdx}-{version}-only", _ONLY_OR_LATER
    if "apache license" in head and "version 2.0" in head:
        return "Apache-2.0", ""
    if "mozilla public license" in head and "2.0" in head:
        return "MPL-2.0", ""
    if "permission is hereby granted, free of charge" in head:
        return "MIT", ""
    if "redistribution and use in source and binary forms" in head:
        three = "neither the name" in head or "endorse or promote" in head
        return ("BSD-3-Clause" if three else "BSD-2-Clause"), ""
    if "permission to use, copy, modify, and/or distribute this software" in head:
        return "ISC", ""
    return None
