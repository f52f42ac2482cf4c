"""The command line as a user meets it: exit codes, messages, --json. No Docker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import recipe_text


def kernbuild(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "kernbuild.cli", *args], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_lint_passes_a_good_suite(suite_dir):
    result = kernbuild("lint", cwd=suite_dir.parent)
    assert result.returncode == 0, result.stderr
    assert "3 recipe(s) OK" in result.stdout


def test_lint_reports_file_line_and_hint_without_traceback(suite_dir):
    bad = suite_dir / "bad.yaml"
    bad.write_text(recipe_text("bad", depends=["python3-numpy >="]).replace("build:", "biuld:"))
    result = kernbuild("lint", cwd=suite_dir.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert f"{bad}:10:1: error: unknown key 'biuld'" in lines
    assert "  hint: did you mean 'build'?" in lines
    assert any(line.startswith(f"{bad}:16:") and "malformed dependency relation" in line
               for line in lines)


def test_lint_json_lists_diagnostics(suite_dir):
    (suite_dir / "bb.yaml").write_text(recipe_text("bb").replace("name: bb", "name: bb;ls"))
    result = kernbuild("lint", "--json", cwd=suite_dir.parent)
    assert result.returncode == 1
    [diagnostic] = json.loads(result.stdout)
    assert diagnostic["line"] == 1 and diagnostic["path"].endswith("bb.yaml")
    assert "hint" in diagnostic and diagnostic["hint"]


def test_lint_named_files_only(suite_dir, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: [\n")
    result = kernbuild("lint", str(suite_dir / "aa.yaml"), cwd=suite_dir.parent)
    assert result.returncode == 0, result.stderr
    result = kernbuild("lint", str(other), cwd=suite_dir.parent)
    assert result.returncode == 1 and "invalid YAML" in result.stderr


def test_graph_and_show_json(suite_dir):
    graph = json.loads(kernbuild("graph", "--json", cwd=suite_dir.parent).stdout)
    assert [row["name"] for row in graph] == ["aa", "bb", "cc"]
    assert graph[2] == {"name": "cc", "version": "1.0-1kern9", "wave": 2, "depends_on": ["bb"]}
    shown = json.loads(kernbuild("show", "bb", "--json", cwd=suite_dir.parent).stdout)
    assert shown["depends_on"] == ["aa"] and shown["needed_by"] == ["cc"]
    assert shown["version"] == "1.0-1kern9"


def test_unknown_recipe_is_one_clear_error(suite_dir):
    result = kernbuild("show", "nope", cwd=suite_dir.parent)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no recipe named 'nope'")
    assert "Traceback" not in result.stderr


def test_debianize_writes_the_debian_tree(suite_dir, tmp_path):
    out = tmp_path / "tree"
    result = kernbuild("debianize", "bb", "-o", str(out), "--debian-only", cwd=suite_dir.parent)
    assert result.returncode == 0, result.stderr
    assert (out / "debian/control").read_text().startswith("Source: bb\n")
    assert "python3-aa" in (out / "debian/control").read_text()


def test_package_without_an_engine_says_so(suite_dir):
    result = kernbuild("package", "aa", cwd=suite_dir.parent,
                       env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "error: no Docker engine answers at unix:///nonexistent/docker.sock" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_recipe_directory(tmp_path):
    result = kernbuild("graph", cwd=tmp_path)
    assert result.returncode == 1 and "no recipe directory" in result.stderr


def test_tampered_source_is_refused_with_both_sums(suite_dir, tmp_path):
    import hashlib
    import http.server
    import threading
    from functools import partial

    served = tmp_path / "served"
    served.mkdir()
    (served / "demo-1.0.tar.gz").write_bytes(b"not what the recipe pinned")
    actual = hashlib.sha256(b"not what the recipe pinned").hexdigest()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/demo-1.0.tar.gz"
        recipe = suite_dir / "demo.yaml"
        recipe.write_text(recipe_text("demo").replace("  pypi: demo\n", f"  url: {url}\n"))
        out = tmp_path / "out"
        result = kernbuild("debianize", "demo", "-o", str(out), cwd=suite_dir.parent)
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "a" * 64 in result.stderr and actual in result.stderr  # expected and actual
    assert str(recipe) in result.stderr
    assert not out.exists()
    blobs = suite_dir.parent / ".kernbuild/sources/blobs"
    assert not blobs.exists() or not any(blobs.iterdir())  # the bad download is not kept


def test_configured_signing_key_must_be_in_the_gnupg_home(suite_dir):
    with (suite_dir / "suite.yaml").open("a") as settings:
        settings.write('signing_key: "0x' + "AB12" * 10 + '"\n')
    result = kernbuild("repo", "info", cwd=suite_dir.parent)
    assert result.returncode == 1
    assert f"signing key {'AB12' * 10} has no secret key" in result.stderr
    assert "--import" in result.stderr


def test_matrix_filters_name_what_exists(suite_dir):
    for args, message in (((), "the suite has no pipelines"),
                          (("--pipeline", "aa"), "aa has no pipeline section"),
                          (("--image", "nosuch"), "no recipe named 'nosuch'"),
                          (("--target", "podman"), "unknown target 'podman'"),
                          (("--executor", "pbs"), "unknown executor 'pbs'"),
                          (("--toil-batch-system", "lsf"), "unknown Toil batch system 'lsf'")):
        result = kernbuild("test", *args, cwd=suite_dir.parent)
        assert result.returncode == 1, args
        assert f"error: {message}" in result.stderr and "Traceback" not in result.stderr


def _git_recipe(suite_dir: Path, sha: str) -> Path:
    commit = "934efe7a05ed85e921fbd94b365bfb87c7b050cb"
    recipe = suite_dir / "gh.yaml"
    recipe.write_text(recipe_text("gh").replace(
        "  pypi: gh\n", "  git: https://github.invalid/upstream/gh\n"
                        f"  commit: {commit}\n").replace("a" * 64, sha))
    return recipe


def _mirror(tmp_path: Path) -> tuple[Path, str]:
    import hashlib
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"print('gh')\n"
        info = tarfile.TarInfo("gh-1.0/gh.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "gh-934efe7a05ed85e921fbd94b365bfb87c7b050cb.tar.gz").write_bytes(buffer.getvalue())
    return mirror, hashlib.sha256(buffer.getvalue()).hexdigest()


def test_source_mirror_by_flag_and_by_variable(suite_dir, tmp_path):
    mirror, sha = _mirror(tmp_path)
    _git_recipe(suite_dir, sha)
    by_flag = kernbuild("--source-mirror", str(mirror), "debianize", "gh", "-o",
                        str(tmp_path / "a"), cwd=suite_dir.parent)
    assert by_flag.returncode == 0, by_flag.stderr
    assert (tmp_path / "a" / "gh.py").is_file() and (tmp_path / "a" / "debian").is_dir()
    by_variable = kernbuild("debianize", "gh", "-o", str(tmp_path / "b"), cwd=suite_dir.parent,
                            env={"KERNBUILD_SOURCE_MIRROR": f"/nonexistent:{mirror}",
                                 "KERNBUILD_STATE": str(tmp_path / "fresh-state")})
    assert by_variable.returncode == 0, by_variable.stderr


def test_source_missing_everywhere_is_one_message(suite_dir, tmp_path):
    _git_recipe(suite_dir, "b" * 64)
    result = kernbuild("debianize", "gh", "-o", str(tmp_path / "out"), cwd=suite_dir.parent)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "https://github.invalid/upstream/gh" in result.stderr
    assert "gh-934efe7a05ed85e921fbd94b365bfb87c7b050cb.tar.gz" in result.stderr
    assert "--source-mirror" in result.stderr
    assert not (tmp_path / "out").exists()


def test_suite_lists_every_recipe_with_where_its_source_is(suite_dir, tmp_path):
    mirror, sha = _mirror(tmp_path)
    _git_recipe(suite_dir, sha)
    (suite_dir / "meta.yaml").write_text(
        "name: meta\nversion: '1'\nsummary: m\ndescription: m\nlicense: MIT\n"
        "build: {system: none}\npackages: {meta: {depends: [python3-cc]}}\n")
    # No network in unit tests: aa's source is a local directory, bb's and cc's are gone.
    (tmp_path / "aa-src").mkdir()
    for name, where in [("aa", "../aa-src"), ("bb", "../gone"), ("cc", "../gone")]:
        path = suite_dir / f"{name}.yaml"
        path.write_text(path.read_text().replace(f"  pypi: {name}\n", f"  path: {where}\n"))
    result = kernbuild("--source-mirror", str(mirror), "suite", "--json", cwd=suite_dir.parent,
                       env={"KERNBUILD_SOURCE_MIRROR": ""})
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert set(entries) == {"aa", "bb", "cc", "gh", "meta"}
    assert entries["gh"]["source"]["where"] == "mirror"
    assert entries["meta"]["source"]["where"] == "none"
    assert entries["aa"]["needed_by"] == ["bb", "cc", "meta"]
    assert entries["cc"]["depends_on"] == ["bb"] and entries["cc"]["published"] is None
    assert entries["aa"]["source"]["where"] == "local"
    assert entries["bb"]["source"]["where"] == "missing"  # so the exit status is 1
    assert result.returncode == 1
    table = kernbuild("--source-mirror", str(mirror), "suite", cwd=suite_dir.parent)
    assert "error: bb: source missing" in table.stderr and "Traceback" not in table.stderr
    assert "5 recipes, 0 published" in table.stdout
