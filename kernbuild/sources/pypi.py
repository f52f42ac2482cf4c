"""``pypi``: the sdist of ``recipe.version`` of a PyPI project, found through PyPI's JSON
API and verified against the recipe's ``sha256``."""

from __future__ import annotations

import json
import urllib.parse

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.sources.extract import extract_archive
from kernbuild.sources.http import NotFound, url_name
from kernbuild.sources.kind import Fetched, SourceKind, pinned_sha256, recipe_mismatch_hint

DEFAULT_PYPI = "https://pypi.org"


class PyPI(SourceKind):
    """A project's sdist on PyPI (``cache.pypi``)."""

    def key(self, recipe: Recipe) -> str:
        return pinned_sha256(recipe)

    def probe(self, recipe: Recipe) -> str:
        return self._sdist(recipe, pinned_sha256(recipe))[0]

    def fetch(self, recipe: Recipe) -> Fetched:
        cache, sha = self.cache, pinned_sha256(recipe)
        blob = cache._cached_blob(sha)
        label = f"{recipe.source.ref} {recipe.version} sdist"
        if blob is None:
            url, filename, published = self._sdist(recipe, sha)
            label = filename
            note = (f"PyPI publishes sha256 {published} for {filename}"
                    if published and published != sha else "")
            blob = cache._download(url, sha, recipe, label=filename,
                                   expected_from=str(recipe.path),
                                   hint=recipe_mismatch_hint(recipe), note=note)
        tree = cache._tree(sha, lambda tmp: extract_archive(blob, tmp / "x", label=label))
        return sha, tree, (blob,)

    def _sdist(self, recipe: Recipe, sha: str) -> tuple[str, str, str | None]:
        """(url, filename, PyPI's sha256) of the sdist of the recipe's version."""
        project, version = recipe.source.ref, recipe.version
        # The project-wide document, not /pypi/NAME/VERSION/json: some mirrors and proxies
        # in front of PyPI serve only the former.
        url = f"{self.cache.pypi}/pypi/{urllib.parse.quote(project)}/json"
        try:
            data = json.loads(self.cache._read(url, recipe))
        except NotFound:
            raise KernError(f"PyPI has no project {project!r} ({url})",
                            f"check 'source: pypi:' in {recipe.path}") from None
        except ValueError as exc:  # not JSON (a captive portal, a broken proxy)
            raise KernError(f"cannot read PyPI's answer for {project} from {url}: "
                            f"{exc}", "try again later; is PyPI reachable?") from None
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, dict) or version not in releases:
            raise KernError(f"PyPI has no release {version} of {project!r} ({url})",
                            f"check the project name and 'version' in {recipe.path}")
        urls = releases[version]
        sdists = [u for u in urls or () if isinstance(u, dict) and u.get("packagetype") == "sdist"]
        if not sdists:
            raise KernError(
                f"{project} {version} has no sdist on PyPI (only built wheels)",
                f"kernbuild builds from source: pick a version with an sdist, or use a 'url:' "
                f"source pointing at the upstream release tarball in {recipe.path}")
        # The recipe's sum is the authority; PyPI's digest only picks among several
        # sdists (old releases have both .zip and .tar.gz) and explains a mismatch.
        chosen = next((u for u in sdists if (u.get("digests") or {}).get("sha256") == sha),
                      sdists[0])
        if not isinstance(chosen.get("url"), str):
            raise KernError(f"PyPI's answer for {project} {version} has no sdist URL ({url})",
                            "try again later")
        # Some answers carry file URLs relative to the JSON document's own URL.
        file_url = urllib.parse.urljoin(url, chosen["url"])
        filename = chosen.get("filename") or url_name(file_url)
        return file_url, filename, (chosen.get("digests") or {}).get("sha256")
