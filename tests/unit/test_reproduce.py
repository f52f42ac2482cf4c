"""kernbuild reproduce's pure parts: naming what differs in two .debs, the variations,
the comparison of a release's .debs, and what it refuses before building anything."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from kernbuild.build.package import BuildConditions
from kernbuild.errors import KernError
from kernbuild.release.cut import snapshot_recipes
from kernbuild.release.debdiff import Difference, deb_differences, read_ar
from kernbuild.release.notes import ReleasedRecipe, ReleaseRecord
from kernbuild.release.reproduce import (DIFFERS, EXTRA, IDENTICAL, MISSING, compare_debs,
                                         released_version, remove_leftovers,
                                         reproduce_release)
from kernbuild.release.sifcheck import tree_differences, tree_entries
from kernbuild.release.variations import (CLOCK_OFFSET, HOSTNAME, LOCALE, TIME_ZONE, UMASK,
                                          VARIATIONS, VARIED_ROOT, choose, conditions)
from kernbuild.results import to_json
from kernbuild.workspace import Workspace


def _tar(files: dict[str, bytes], mtime: int = 1_700_000_000, mode: int = 0o644,
         compression: str = "xz", order: list[str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name in order or list(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), mtime, mode
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def _ar(members: list[tuple[str, bytes]], mtime: int = 1_700_000_000) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        out += (f"{name:<16}{mtime:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n").encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def _deb(data: dict[str, bytes], control: dict[str, bytes] | None = None, **options) -> bytes:
    ar_mtime = options.pop("ar_mtime", 1_700_000_000)
    return _ar([("debian-binary", b"2.0\n"),
                ("control.tar.xz", _tar(control or {"./control": b"Package: x\n"})),
                ("data.tar.xz", _tar(data, **options))], ar_mtime)


FILES = {"./usr/share/x/year": b"2026\n", "./usr/share/doc/x/copyright": b"GPL\n"}


def test_identical_debs_have_no_difference():
    assert deb_differences(_deb(FILES), _deb(FILES)) == ()


def test_a_changed_file_is_named_with_its_member():
    changed = {**FILES, "./usr/share/x/year": b"2028\n"}
    [found] = deb_differences(_deb(FILES), _deb(changed))
    assert (found.member, found.path) == ("data.tar.xz", "./usr/share/x/year")
    assert found.what.startswith("content (sha256 ")
    assert str(found).startswith("data.tar.xz: ./usr/share/x/year: content")


def test_metadata_and_presence_are_named():
    assert [str(d) for d in deb_differences(_deb(FILES), _deb(FILES, mtime=1_800_000_000))] == [
        "data.tar.xz: ./usr/share/doc/x/copyright: mtime 1700000000 -> 1800000000",
        "data.tar.xz: ./usr/share/x/year: mtime 1700000000 -> 1800000000"]
    modes = deb_differences(_deb(FILES), _deb(FILES, mode=0o664))
    assert {d.what for d in modes} == {"mode 0644 -> 0664"}
    more = {**FILES, "./usr/share/x/host": b"builder\n"}
    assert [str(d) for d in deb_differences(_deb(FILES), _deb(more))] == [
        "data.tar.xz: ./usr/share/x/host: only in the rebuilt .deb"]
    assert [str(d) for d in deb_differences(_deb(more), _deb(FILES))] == [
        "data.tar.xz: ./usr/share/x/host: only in the frozen .deb"]


def test_the_same_files_in_another_order_or_archive_are_said_so():
    reordered = deb_differences(_deb(FILES), _deb(FILES, order=list(FILES)[::-1]))
    assert [str(d) for d in reordered] == ["data.tar.xz: the same files, in another order"]
    gzip = deb_differences(_deb(FILES), _deb(FILES, compression="gz"))
    assert [str(d) for d in gzip] == ["data.tar.xz: the same files, compressed differently"]
    header = deb_differences(_deb(FILES), _deb(FILES, ar_mtime=1_800_000_000))
    assert {(d.member, d.what) for d in header} == {
        (name, "ar header mtime 1700000000 -> 1800000000")
        for name in ("debian-binary", "control.tar.xz", "data.tar.xz")}


def test_the_control_member_is_compared_too():
    found = deb_differences(_deb(FILES, {"./control": b"Package: x\n"}),
                            _deb(FILES, {"./control": b"Package: x\nX-Built-On: h\n"}))
    assert [(d.member, d.path) for d in found] == [("control.tar.xz", "./control")]


def test_not_a_deb_is_one_difference():
    assert deb_differences(_deb(FILES), b"garbage") == (
        Difference("(the .deb)", "", "cannot be read as a .deb: not an ar archive "
                                     "(no !<arch> magic)"),)
    with pytest.raises(ValueError):
        read_ar(b"!<arch>\n" + b"x" * 60)


def test_vary_reads_reprotest_s_spelling():
    assert choose("") == tuple(VARIATIONS) == choose("all")
    assert choose("-time") == ("build_path", "timezone", "umask", "hostname", "locales")
    assert choose("umask,+time") == ("time", "umask")
    assert choose("-all,hostname") == ("hostname",)
    assert choose("all,-time,-locales") == ("build_path", "timezone", "umask", "hostname")
    with pytest.raises(KernError, match="'clock' is no variation"):
        choose("clock")


def test_the_variations_set_the_build_container():
    assert conditions(()) == BuildConditions()
    varied = conditions(tuple(VARIATIONS))
    assert varied.root == VARIED_ROOT != BuildConditions.root
    assert varied.hostname == HOSTNAME
    env = dict(varied.environment)
    assert env["TZ"] == TIME_ZONE and env["LC_ALL"] == env["LANG"] == LOCALE
    assert set(varied.packages) == {"faketime", "locales"}
    assert varied.setup == (("localedef", "-i", "fr_CH", "-c", "-f", "UTF-8", LOCALE),)
    # umask's shell execs faketime, which runs the build command appended after it
    assert varied.prefix == ("sh", "-c", f'umask {UMASK} && exec "$@"', "umask",
                             "faketime", "-f", CLOCK_OFFSET)
    only_time = conditions(("time",))
    assert only_time.prefix == ("faketime", "-f", CLOCK_OFFSET)
    # the clock only: file times as stat() reads them stay real
    assert only_time.root == "/build" and only_time.environment == (("NO_FAKE_STAT", "1"),)


def test_compare_debs_names_each_outcome(tmp_path):
    pool, rebuilt = tmp_path / "pool", tmp_path / "rebuilt"
    pool.mkdir(), rebuilt.mkdir()
    same, other = _deb(FILES), _deb({**FILES, "./usr/share/x/year": b"2028\n"})
    for name, old, new in (("a_1_all.deb", same, same), ("b_1_all.deb", same, other)):
        (pool / name).write_bytes(old)
        (rebuilt / name).write_bytes(new)
    (pool / "c_1_all.deb").write_bytes(same)
    (rebuilt / "d_1_all.deb").write_bytes(same)
    import hashlib

    sums = {f"pool/main/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in pool.iterdir()}
    checks = compare_debs("x", {p.name: p for p in pool.iterdir()}, sums,
                          {p.name: p for p in rebuilt.iterdir()})
    assert [(c.file, c.status) for c in checks] == [
        ("a_1_all.deb", IDENTICAL), ("b_1_all.deb", DIFFERS), ("c_1_all.deb", MISSING),
        ("d_1_all.deb", EXTRA)]
    assert [d.path for d in checks[1].differences] == ["./usr/share/x/year"]
    assert checks[1].frozen_sha256 != checks[1].rebuilt_sha256
    # A pool file that is not what the release recorded is no comparison at all.
    (pool / "a_1_all.deb").write_bytes(other)
    with pytest.raises(KernError, match="the release recorded"):
        compare_debs("x", {p.name: p for p in pool.iterdir()}, sums,
                     {p.name: p for p in rebuilt.iterdir()})


def test_a_recipe_s_released_version():
    assert released_version(ReleasedRecipe("x", "1.0", "1.0-1kern1",
                                           {"x": "1.0-1kern1+b1", "x-doc": "1.0-1kern1+b1"})) \
        == "1.0-1kern1+b1"
    with pytest.raises(KernError, match="2 versions"):
        released_version(ReleasedRecipe("x", "1.0", "1.0-1kern1", {"x": "1", "y": "2"}))


def test_two_root_filesystems_name_the_files_that_differ(tmp_path):
    import os

    first, second = tmp_path / "first", tmp_path / "second"
    for root, stamp in ((first, b"2026\n"), (second, b"2028\n")):
        (root / ".singularity.d").mkdir(parents=True)
        (root / ".singularity.d" / "labels.json").write_bytes(stamp)
        (root / "etc").mkdir()
        (root / "etc" / "hostname").write_text("kern\n")
        (root / "bin").symlink_to("usr/bin")
    (first / "gone").write_text("x")
    for path in [*first.rglob("*"), *second.rglob("*")]:  # made at one time, as by a build
        os.utime(path, ns=(1, 1_700_000_000_000_000_000), follow_symlinks=False)
    os.utime(second / "etc" / "hostname", ns=(1, 1_700_000_000_500_000_000))
    found = tree_differences(tree_entries(first), tree_entries(second))
    assert [line.split(": ")[0] for line in found] == [
        ".singularity.d/labels.json", "etc/hostname", "gone"]
    assert found[0].startswith(".singularity.d/labels.json: content (sha256 ")
    # half a second apart: what a listing by the minute would miss
    assert found[1] == ("etc/hostname: mtime 1700000000000000000 -> 1700000000500000000")
    assert found[2] == "gone: only in the first"
    assert tree_differences(tree_entries(first), tree_entries(first)) == ()


def _workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "recipes", tmp_path / "state", lock_wait=0)


def _keep_record(workspace: Workspace, number: int = 1) -> Path:
    directory = workspace.state / "releases" / f"kern-{number}"
    directory.mkdir(parents=True)
    record = ReleaseRecord("kern", number, f"kern-{number}", "2026-11-01",
                           (ReleasedRecipe("x", "1.0", "1.0-1kern1", {"x": "1.0-1kern1"},
                                           {"pool/main/x/x_1.0-1kern1_all.deb": "0" * 64}),))
    (directory / "release.json").write_text(json.dumps(to_json(record)))
    return directory


def test_reproduce_refuses_what_it_cannot_rebuild(tmp_path):
    workspace = _workspace(tmp_path)
    with pytest.raises(KernError, match="no release kern-1 is kept") as missing:
        reproduce_release(workspace, "kern-1")
    assert missing.value.hint == "kernbuild release cuts one"
    directory = _keep_record(workspace)
    (workspace.state / "releases" / ".kern-2.partial-x1").mkdir()  # a release being written
    with pytest.raises(KernError, match="no release kern-2 is kept") as other:
        reproduce_release(workspace, "kern-2")
    assert other.value.hint == "releases kept: kern-1"
    # A record of a release cut before the recipes were kept stays readable: the
    # refusal says how to give them.
    with pytest.raises(KernError, match="keeps no recipes") as old:
        reproduce_release(workspace, "kern-1")
    assert "--recipes-from DIR" in old.value.hint
    (workspace.state / "releases" / ".kern-1.pending").write_text("under way\n")
    with pytest.raises(KernError, match="kern-1 is not finished"):
        reproduce_release(workspace, "kern-1")
    (workspace.state / "releases" / ".kern-1.pending").unlink()
    # The recipes of another release are refused, before anything is built.
    snapshot = directory / "recipes"
    snapshot.mkdir()
    (snapshot / "suite.yaml").write_text("name: kern\nrelease: 2\n")
    with pytest.raises(KernError, match="is the suite of kern-2, not of kern-1"):
        reproduce_release(workspace, "kern-1")
    assert not (workspace.state / "reproduce").exists()


def test_the_recipes_snapshot_keeps_what_the_recipes_read(tmp_path):
    recipes = tmp_path / "recipes"
    (recipes / "patches" / "x").mkdir(parents=True)
    (recipes / "suite.yaml").write_text("release: 1\n")
    (recipes / "patches" / "x" / "fix.patch").write_text("--- a\n")
    (recipes / ".git").mkdir()
    (recipes / "__pycache__").mkdir()
    (recipes / "link").symlink_to("suite.yaml")
    dest = snapshot_recipes(recipes, tmp_path / "kept")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "link", "patches", "patches/x", "patches/x/fix.patch", "suite.yaml"]
    assert (dest / "link").is_symlink()


def test_only_a_dead_run_s_scratch_is_removed(tmp_path):
    import os

    live = tmp_path / f".{os.getpid()}-kern-1-abc"
    dead = tmp_path / ".999999999-kern-1-abc"
    live.mkdir(), dead.mkdir()
    assert remove_leftovers(tmp_path) == [dead]
    assert live.is_dir() and not dead.exists()
