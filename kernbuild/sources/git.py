"""``git``: a repository at a full commit id.

The tarball ``<name>-<commit>.tar.gz`` (``git archive`` output; ``name`` is the
repository's or the recipe's) from a source mirror, verified against the
recipe's ``sha256``; or else a clone checked out at the commit, with ``.git``
removed.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.recipe.schema import GIT_COMMIT
from kernbuild.fsutil import remove_tree
from kernbuild.sources.extract import extract_archive
from kernbuild.sources.kind import Fetched, SourceKind
from kernbuild.sources.treehash import tree_hash


class Git(SourceKind):
    """A commit of a git repository: from a source mirror's tarball, else cloned."""

    def key(self, recipe: Recipe) -> str:
        commit = _pinned_commit(recipe)  # a pinned tarball names its bytes; else the commit does
        return recipe.source.sha256 or commit

    def cached_tree(self, recipe: Recipe) -> Path | None:
        return self.cache._cached_tree(_pinned_commit(recipe))

    def mirror_names(self, recipe: Recipe) -> list[str]:
        return _tarball_names(recipe, _pinned_commit(recipe))

    def probe(self, recipe: Recipe) -> str:
        ref = recipe.source.ref
        self._git(recipe, ["git", *_stall_options(self.cache.limits.timeout), "ls-remote",
                           "--exit-code", "--", ref, "HEAD"],
                  f"cannot reach {ref}", "", timeout=self.cache.timeout)
        return ref

    def fetch(self, recipe: Recipe) -> Fetched:
        cache = self.cache
        commit = _pinned_commit(recipe)
        repo = recipe.source.ref
        sha = recipe.source.sha256
        names = _tarball_names(recipe, commit)
        blob = sha and (cache._cached_blob(sha)
                        or cache._from_source_mirrors(recipe, names, sha))
        if blob:
            tree = cache._tree(sha, lambda tmp: extract_archive(blob, tmp / "x",
                                                                label=names[0]))
            return sha, tree, (blob,)

        def checkout(tmp: Path) -> Path:
            work = tmp / "src"
            # "--" keeps a repository URL that starts with "-" from being read as an option.
            try:
                self._git(recipe, ["git", *_stall_options(cache.limits.timeout), "clone",
                                   "--quiet", "--no-checkout", "--", repo, str(work)],
                          f"cannot clone {repo}",
                          f"check 'git' in {recipe.path}; the repository must be reachable",
                          timeout=cache.limits.deadline)
            except KernError as exc:
                version = recipe.version
                raise cache._missing_everywhere(
                    recipe, exc, names,
                    f"having made it where {repo} is reachable (git archive --format=tar "
                    f"--prefix={names[0].rsplit('-', 1)[0]}-{version}/ {commit} "
                    f"| gzip -n -9 > {names[0]})") from None
            self._git(recipe, ["git", "-c", "advice.detachedHead=false", "-c",
                               "core.autocrlf=false", "checkout", "--quiet", commit],
                      f"commit {commit} is not in {repo}",
                      f"check 'commit' in {recipe.path}: it must be a full commit id "
                      f"reachable from a branch or tag of the repository", cwd=work)
            remove_tree(work / ".git")
            return work

        tree = cache._tree(commit, checkout)
        # _tree verified the tree against this record, or has just recorded it.
        return cache._recorded_tree_hash(commit) or tree_hash(tree), tree, ()

    def _git(self, recipe: Recipe, args: list[str], message: str, hint: str,
             cwd: Path | None = None, timeout: float | None = None) -> None:
        # Never prompt for credentials: a build must fail, not hang.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                                    check=False, timeout=timeout)
        except FileNotFoundError:
            raise KernError(f"{recipe.path}: a git source needs the 'git' program",
                            "install git (apt-get install git)") from None
        except subprocess.TimeoutExpired:
            raise KernError(f"{message}: no answer in {timeout:g} s", hint) from None
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["git failed"])[-1]
            raise KernError(f"{message}: {detail}", hint)


def _stall_options(timeout: float) -> list[str]:
    """git's own stall detection over HTTP(S): abort below 1 kB/s for ``timeout`` seconds,
    as downloads stall out (the subprocess timeout bounds the whole clone)."""
    return ["-c", "http.lowSpeedLimit=1000", "-c", f"http.lowSpeedTime={max(1, round(timeout))}"]


def _pinned_commit(recipe: Recipe) -> str:
    """The recipe's commit id, in lower case; KernError unless it is a full one."""
    commit = (recipe.source.commit or "").lower()
    if not GIT_COMMIT.match(commit):
        raise KernError(f"{recipe.path}: a git source needs 'commit', a full commit id",
                        "pin the exact commit (git rev-parse HEAD): branches and tags move")
    return commit


def _tarball_names(recipe: Recipe, commit: str) -> list[str]:
    """File names a source mirror may hold a git source's tarball under.

    ``<repository>-<commit>.tar.gz`` (the repository's name as upstream spells
    it and in lower case), then ``<recipe>-<commit>.tar.gz``.
    """
    repository = posixpath.basename(recipe.source.ref.rstrip("/"))
    repository = repository.removesuffix(".git")
    names = [f"{n}-{commit}.tar.gz" for n in (repository, repository.lower(), recipe.name) if n]
    return list(dict.fromkeys(names))
