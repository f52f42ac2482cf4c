"""The release's rules without Docker: notes against the previous release, refusals,
the calendar, the Markdown, suite.yaml moved on, and ``kernbuild release --dry-run``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernbuild.errors import KernError, RecipeError
from kernbuild.recipe import load_suite
from kernbuild.recipe.settings import Calendar
from kernbuild.release.notes import (ReleasedBuildImage, ReleasedCell, ReleasedImage,
                                     ReleasedRecipe, ReleaseRecord, build_image_changes,
                                     compare, due_date, make_notes, refuse_failures,
                                     refused_cells, release_months, render_markdown,
                                     with_accepted)
from kernbuild.results import from_json, to_json

SIX = Calendar("2026-11-01", 6)


def record(number: int, **recipes: tuple[str, str]) -> ReleaseRecord:
    """A release of ``name=(upstream, debian version)`` recipes."""
    return ReleaseRecord("kern", number, f"kern-{number}", due_date(SIX, number).isoformat(),
                         tuple(ReleasedRecipe(n, up, v, {f"python3-{n}": v})
                               for n, (up, v) in sorted(recipes.items())))


def test_calendar_six_months_from_the_first():
    assert due_date(SIX, 1) == dt.date(2026, 11, 1)
    assert due_date(SIX, 2) == dt.date(2027, 5, 1)
    assert due_date(SIX, 3) == dt.date(2027, 11, 1)
    assert due_date(SIX, 10) == dt.date(2031, 5, 1)
    assert release_months(SIX) == [5, 11]
    # A day the month lacks is its last day.
    assert due_date(Calendar("2026-08-31", 6), 2) == dt.date(2027, 2, 28)
    assert release_months(Calendar("2026-01-15", 4)) == [1, 5, 9]


def test_notes_name_added_dropped_upgraded_and_rebuilt():
    one = record(1, a=("1.0", "1.0-1kern1"), b=("1.0", "1.0-1kern1"), p=("1.0", "1.0-1kern1"))
    two = record(2, a=("1.1", "1.1-1kern2"), c=("0.5", "0.5-1kern2"), p=("1.0", "1.0-1kern2"))
    added, dropped, upgraded, rebuilt = compare(one, two, {"b": "upstream is gone"})
    assert [(c.name, c.new) for c in added] == [("c", "0.5")]
    assert [(c.name, c.old, c.reason) for c in dropped] == [("b", "1.0", "upstream is gone")]
    assert [(c.name, c.old, c.new) for c in upgraded] == [("a", "1.0", "1.1")]
    assert [(c.name, c.old, c.new) for c in rebuilt] == [("p", "1.0-1kern1", "1.0-1kern2")]
    notes = make_notes(one, two, {"b": "upstream is gone"}, SIX)
    text = render_markdown(notes)
    assert "Against KERN-1." in text
    assert "- a: 1.0 → 1.1" in text and "- b 1.0: upstream is gone" in text
    assert "- c 0.5" in text and "- p: 1.0-1kern1 → 1.0-1kern2" in text
    assert "Next: KERN-3, due 2027-11-01." in text
    assert to_json(notes)["upgraded"] == [{"name": "a", "kind": "upgraded", "old": "1.0",
                                           "new": "1.1", "reason": ""}]


def test_the_first_release_adds_everything():
    notes = make_notes(None, record(1, a=("1.0", "1.0-1kern1")), {}, SIX)
    assert notes.previous is None and [c.name for c in notes.added] == ["a"]
    assert "The first release." in render_markdown(notes)


def test_a_drop_without_a_reason_is_an_error_at_suite_yaml():
    one = record(1, a=("1.0", "1.0-1kern1"), b=("1.0", "1.0-1kern1"), c=("1", "1-1kern1"))
    two = record(2, a=("1.0", "1.0-1kern2"))
    with pytest.raises(KernError) as err:
        compare(one, two, {"c": "merged into a"}, "recipes/suite.yaml:2:1")
    assert err.value.message == ("recipes/suite.yaml:2:1: KERN-2 drops b of KERN-1 without "
                                 "a reason")
    assert "dropped: {b: <reason>}" in err.value.hint
    with pytest.raises(KernError) as err:
        compare(one, record(2, a=("1", "1-1kern2"), b=("1", "1-1kern2"), c=("1", "1-1kern2")),
                {"c": "gone"}, "suite.yaml:9:1")
    assert "c listed under dropped: but still a recipe" in err.value.message


def test_a_failing_cell_refuses_the_release_unless_accepted():
    cells = (ReleasedCell("wcs", "wcslib", "docker", "docker", "pass"),
             ReleasedCell("wcs", "wcslib", "sif", "apptainer", "skip", "no apptainer"),
             ReleasedCell("wcs", "wcslib", "docker", "udocker", "fail", "assertion failed"))
    assert [c.key for c in refused_cells(cells)] == ["wcs/wcslib/udocker"]
    with pytest.raises(KernError) as err:
        refuse_failures(cells, "KERN-1", "suite.yaml:4:1")
    assert "KERN-1 is refused: 1 matrix cell failed" in err.value.message
    assert "wcs/wcslib/udocker (docker): assertion failed" in err.value.message
    assert "accepted_failures: {wcs/wcslib/udocker: <why" in err.value.hint
    accepted = with_accepted(cells, {"wcs/wcslib/udocker": "udocker is broken here",
                                     "wcs/wcslib/docker": "never needed: it passed"})
    refuse_failures(accepted, "KERN-1", "suite.yaml")  # no error
    assert accepted[0].accepted == "" and accepted[2].accepted == "udocker is broken here"
    notes = make_notes(None, ReleaseRecord("kern", 1, "kern-1", "2026-11-01", (), (), accepted),
                       {}, SIX)
    assert "| wcs | wcslib | docker | udocker | fail (accepted) | udocker is broken here |" \
        in render_markdown(notes)


def test_a_record_reads_back_as_it_was_written():
    one = ReleaseRecord("kern", 1, "kern-1", "2026-11-01",
                        (ReleasedRecipe("a", "1.0", "1.0-1kern1", {"a": "1.0-1kern1"},
                                        {"pool/main/a/a/a_1.0-1kern1_all.deb": "ab" * 32}),),
                        (ReleasedImage("kern/a:1", "a", "sha256:" + "c" * 64, 123),),
                        (ReleasedCell("p", "a", "docker", "docker", "pass"),), generation=3)
    assert from_json(ReleaseRecord, json.loads(json.dumps(to_json(one)))) == one


def _suite(tmp_path: Path, settings: str, recipes: dict[str, str]) -> Path:
    directory = tmp_path / "recipes"
    directory.mkdir(parents=True)
    (directory / "suite.yaml").write_text(settings)
    for name, version in recipes.items():
        (directory / f"{name}.yaml").write_text(
            f"name: {name}\nversion: \"{version}\"\nsummary: {name}\ndescription: |\n  x\n"
            f"license: MIT\ncopyright: tests\nbuild:\n  system: none\npackages:\n  {name}:\n"
            f"    architecture: all\n")
    return directory


def test_suite_yaml_policy_keys_are_checked(tmp_path: Path):
    directory = _suite(tmp_path, "name: kern\nrelease: 2\ncalendar: {first: 2026-11-01, "
                       "months: 6}\ndropped: {old: ''}\naccepted_failures: {a/b: why}\n", {})
    with pytest.raises(RecipeError) as err:
        load_suite(directory)
    text = str(err.value)
    assert "suite.yaml:4:" in text and "a reason" in text
    assert "suite.yaml:5:" in text and "pipeline/image/target" in text


def test_policy_is_no_build_input(tmp_path: Path):
    plain = load_suite(_suite(tmp_path / "a", "name: kern\nrelease: 2\n", {})).settings
    policy = load_suite(_suite(tmp_path / "b", "name: kern\nrelease: 2\ncalendar: {first: "
                               "2027-01-01, months: 3}\ndropped: {xy: gone}\n", {})).settings
    assert plain.build_inputs() == policy.build_inputs()
    assert policy.dropped == {"xy": "gone"} and policy.calendar == Calendar("2027-01-01", 3)
    assert plain.rolling_distribution == "kern-dev"


def _kernbuild(directory: Path, state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes", str(directory),
                           "--state", str(state), *args], capture_output=True, text=True)


def _fake_release(state: Path, rec: ReleaseRecord) -> None:
    """A previous release's record, as kernbuild release leaves it."""
    directory = state / "releases" / rec.distribution
    directory.mkdir(parents=True)
    (directory / "release.json").write_text(json.dumps(to_json(rec)))


def test_dry_run_shows_the_notes_and_writes_nothing(tmp_path: Path):
    directory = _suite(tmp_path, "name: kern\nrelease: 2  # KERN-2: kern2\n"
                       "dropped:\n  bb: merged into aa\n", {"aa": "1.1", "cc": "2.0"})
    state = tmp_path / "state"
    _fake_release(state, record(1, aa=("1.0", "1.0-1kern1"), bb=("1.0", "1.0-1kern1")))
    before = sorted(p for p in tmp_path.rglob("*"))
    suite_yaml = (directory / "suite.yaml").read_text()
    done = _kernbuild(directory, state, "release", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    notes = json.loads(done.stdout)["notes"]
    assert notes["dry_run"] and notes["previous"] == "KERN-1"
    assert [(c["name"], c["old"], c["new"]) for c in notes["upgraded"]] == [("aa", "1.0", "1.1")]
    assert [(c["name"], c["reason"]) for c in notes["dropped"]] == [("bb", "merged into aa")]
    assert [c["name"] for c in notes["added"]] == ["cc"]
    text = _kernbuild(directory, state, "release", "--dry-run")
    assert "# KERN-2 (`kern-2`), due 2027-05-01" in text.stdout
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert (directory / "suite.yaml").read_text() == suite_yaml


def test_a_drop_without_a_reason_fails_the_command_at_its_line(tmp_path: Path):
    directory = _suite(tmp_path, "name: kern\nrelease: 2\n", {"aa": "1.0"})
    state = tmp_path / "state"
    _fake_release(state, record(1, aa=("1.0", "1.0-1kern1"), bb=("1.0", "1.0-1kern1")))
    done = _kernbuild(directory, state, "release", "--dry-run")
    assert done.returncode == 1
    assert f"error: {directory / 'suite.yaml'}:2:1: KERN-2 drops bb of KERN-1 without a " \
           "reason" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_build_image_s_changes_name_each_package_once():
    released = {"debhelper": "13.24", "dh-python": "6.2", "libc6:amd64": "2.41-6",
                "python3-old": "1.0"}
    used = {"debhelper": "13.26", "dh-python": "6.2", "libc6:amd64": "2.41-12",
            "python3-new": "2.0"}
    assert build_image_changes(released, used) == (
        "debhelper 13.24 -> 13.26", "libc6:amd64 2.41-6 -> 2.41-12", "+python3-new 2.0",
        "-python3-old 1.0")
    assert build_image_changes(released, dict(released)) == ()


def test_the_build_image_survives_the_record_s_json_and_an_old_record_has_none():
    kept = ReleasedBuildImage("kern/build:kern-1", "sha256:" + "b" * 64, {"debhelper": "13.24"})
    one = ReleaseRecord("kern", 1, "kern-1", "2026-11-01", build_image=kept)
    assert from_json(ReleaseRecord, json.loads(json.dumps(to_json(one)))) == one
    older = {k: v for k, v in to_json(one).items() if k != "build_image"}
    assert from_json(ReleaseRecord, older).build_image is None


def test_a_release_number_released_already_is_refused(tmp_path: Path):
    directory = _suite(tmp_path, "name: kern\nrelease: 1\n", {"aa": "1.0"})
    state = tmp_path / "state"
    _fake_release(state, record(1, aa=("1.0", "1.0-1kern1")))
    done = _kernbuild(directory, state, "release", "--dry-run")
    assert done.returncode == 1
    assert f"{directory / 'suite.yaml'}:2:1: kern-1 is released already" in done.stderr
    assert "release: 2 in suite.yaml" in done.stderr


def test_bump_release_keeps_the_rest_of_suite_yaml(tmp_path: Path):
    from kernbuild.release.cut import bump_release
    from kernbuild.workspace import Workspace

    directory = _suite(tmp_path, "# the suite\nname: kern\nrelease: 1   # KERN-1: kern1\n"
                       "date: 2026-11-01\n", {})
    assert bump_release(Workspace(directory, tmp_path / "state"), 1, "2027-05-01") == 2
    assert (directory / "suite.yaml").read_text() == (
        "# the suite\nname: kern\nrelease: 2   # KERN-2: kern2\ndate: 2027-05-01\n")
    assert load_suite(directory).settings.release == 2


def test_the_scheduled_pipeline_follows_the_suite_s_calendar():
    """The workflow's cron fires in the months and on the day the calendar gives, has a
    manual trigger, runs ci/release.sh and keeps the notes, lockfile, JUnit and report."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    workflow = yaml.safe_load((root / ".github/workflows/release.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1: on is True
    assert "workflow_dispatch" in triggers
    [schedule] = triggers["schedule"]
    minute, hour, day, months, weekday = schedule["cron"].split()
    calendar = load_suite(root / "recipes").settings.calendar
    assert [int(m) for m in months.split(",")] == release_months(calendar)
    assert int(day) == due_date(calendar, 1).day and weekday == "*"
    steps = workflow["jobs"]["release"]["steps"]
    assert any("bash ci/release.sh" in step.get("run", "") for step in steps)
    kept = next(step for step in steps if "upload-artifact" in step.get("uses", ""))
    for artifact in ("notes.md", "notes.json", "kern.lock", "junit.xml", "report/"):
        assert f"release-artifacts/{artifact}" in kept["with"]["path"]


# -- the release's wiring, without Docker: the builds and the matrix stand in, the
# repository (real gpg, apt-ftparchive) and every file written are real.

@pytest.fixture
def staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A suite of two metapackages whose .debs are published, a stand-in builder that
    finds them built, and a stand-in matrix whose one cell fails."""
    from kernbuild.build import open_repository
    from kernbuild.build.package import BuildResult
    from kernbuild.matrix import MatrixRun
    from kernbuild.matrix.state import CellResult
    from kernbuild.workspace import Workspace
    from tests.unit.test_repo import _MISSING, _kill_agent, make_deb

    if _MISSING:
        pytest.skip(f"the repository needs {', '.join(_MISSING)}")
    directory = _suite(tmp_path, "name: kern\nrelease: 1   # KERN-1: kern1\n",
                       {"aa": "1.0", "bb": "2.0"})
    workspace = Workspace(directory, tmp_path / "state")
    suite = load_suite(directory)
    debs = tmp_path / "debs"
    debs.mkdir()
    open_repository(workspace, suite).publish(
        [make_deb(debs, "aa", "1.0-1kern1"), make_deb(debs, "bb", "2.0-1kern1")])

    class Builder:
        def __init__(self, report=lambda *_: None, **_):
            self.report = report

        def run(self, names):
            for n in names:
                self.report(n, "cached", "")
            return [BuildResult(n, "", "", "cached") for n in names]

    def matrix(*_, report=lambda *_: None, **__):
        report(cell, cell.status)
        return MatrixRun([cell], [], tmp_path / "kept")

    cell = CellResult("k", "aa", "aa", "docker", "docker", "fail", "assertion sum failed")
    monkeypatch.setattr("kernbuild.build.open_builder", lambda *a, **k: Builder(**k))
    # the build image's tag and package list (a container of the engine) stand in too
    monkeypatch.setattr("kernbuild.release.cut.keep_build_image", lambda _builder, dist: (
        ReleasedBuildImage(f"kern/build:{dist}", "sha256:" + "b" * 64, {"debhelper": "13.24"})))
    monkeypatch.setattr("kernbuild.matrix.run_matrix", matrix)
    yield workspace
    _kill_agent(workspace.gnupg)


def test_a_failing_cell_refuses_the_release_and_nothing_is_written(staged) -> None:
    from kernbuild.release.cut import cut_release

    suite_yaml = (staged.recipes / "suite.yaml").read_text()
    with pytest.raises(KernError) as err:
        cut_release(staged, load_suite(staged.recipes))
    assert "KERN-1 is refused: 1 matrix cell failed" in err.value.message
    assert "aa/aa/docker (docker): assertion sum failed" in err.value.message
    assert not (staged.state / "releases").exists() or not any(
        (staged.state / "releases").iterdir())
    assert not (staged.repo / "frozen").exists()
    assert (staged.recipes / "suite.yaml").read_text() == suite_yaml


def test_an_accepted_failure_ships_and_the_release_is_recorded(staged) -> None:
    from kernbuild.build import open_repository
    from kernbuild.release.cut import cut_release

    suite_yaml = staged.recipes / "suite.yaml"
    suite_yaml.write_text(suite_yaml.read_text()
                          + "accepted_failures:\n  aa/aa/docker: known, fixed upstream\n")
    said: list[str] = []
    done = cut_release(staged, load_suite(staged.recipes), say=said.append)
    # a line per recipe and per cell as each finishes: the scheduled job's log
    assert said[1:3] == ["KERN-1: aa cached, 1 of 2", "KERN-1: bb cached, 2 of 2"]
    assert "KERN-1: aa/aa/docker fail (assertion sum failed)" in said
    assert done.directory == staged.state / "releases" / "kern-1" and done.next_release == 2
    for name in ("release.json", "notes.md", "notes.json", "junit.xml", "report/index.html"):
        assert (done.directory / name).is_file(), name
    assert "| aa | aa | docker | docker | fail (accepted) | known, fixed upstream |" \
        in (done.directory / "notes.md").read_text()
    record = json.loads((done.directory / "release.json").read_text())
    assert [(r["name"], r["packages"]) for r in record["recipes"]] == [
        ("aa", {"aa": "1.0-1kern1"}), ("bb", {"bb": "2.0-1kern1"})]
    assert all(len(sha) == 64 for r in record["recipes"] for sha in r["files"].values())
    assert record["build_image"]["tag"] == "kern/build:kern-1"
    assert "release: 2   # KERN-2: kern2" in suite_yaml.read_text()
    moved_on = load_suite(staged.recipes)
    repo = open_repository(staged, moved_on)
    assert repo.frozen() == ["kern-1"]
    assert repo.distributions() == ["kern-1", "kern-2", "kern-dev"]  # kern-2 served at once
    assert repo.verify().ok
    suite_yaml.write_text(suite_yaml.read_text().replace("release: 2", "release: 1"))
    with pytest.raises(KernError) as err:  # kern-1 again: never
        cut_release(staged, load_suite(staged.recipes))
    assert "kern-1 is released already" in err.value.message
