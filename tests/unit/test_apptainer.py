"""The containerised apptainer's shim, without Docker: what ``docker run`` it starts."""

from __future__ import annotations

import json
from pathlib import Path

from kernbuild.runtime import apptainer
from kernbuild.runtime.apptainer import IMAGE, docker_command
from kernbuild.runtime.docker import INHERITED_LABELS


def test_action_commands_get_userns_and_the_paths_they_name(tmp_path: Path):
    sif = tmp_path / "images" / "x.sif"
    sif.parent.mkdir()
    sif.write_bytes(b"")
    work = tmp_path / "work"
    work.mkdir()
    command = docker_command(["exec", "--bind", f"{work}:/data,/nonexistent", str(sif),
                              "sh", "-c", "true"], cwd="/srv", env={"HOME": "/root"})
    assert command[:2] == ["docker", "run"]
    at = command.index(IMAGE)
    assert command[at + 1:at + 4] == ["apptainer", "exec", "--userns"]
    mounts = {command[i + 1] for i, word in enumerate(command[:at]) if word == "-v"}
    # /tmp holds tmp_path here: one mount covers it; /nonexistent is not made up
    assert mounts == {"/tmp:/tmp", "/srv:/srv", "/root:/root"}
    assert command[command.index("-w") + 1] == "/srv"
    for option in apptainer.DOCKER_OPTIONS:
        assert option in command[:at]
    assert "--privileged" not in command


def test_other_commands_pass_as_they_are_and_apptainer_variables_go_in():
    command = docker_command(["--version"], cwd="/", env={
        "APPTAINERENV_FOO": "1", "SINGULARITY_BIND": "/x", "SECRET": "no",
        apptainer.CONTAINER_VARIABLE: "kb-7"})
    at = command.index(IMAGE)
    assert command[at + 1:] == ["apptainer", "--version"]
    passed = [command[i + 1] for i, word in enumerate(command[:at]) if word == "-e"]
    assert passed == ["APPTAINERENV_FOO", "SINGULARITY_BIND"]
    assert command[command.index("--name") + 1] == "kb-7"  # the runner removes it on timeout


def test_cwltool_mount_options_are_bound(tmp_path: Path):
    """cwltool --singularity names inputs as --mount=type=bind,source=SRC,target=DST."""
    data = Path("/srv")  # outside /tmp, so it needs a mount of its own
    command = docker_command(["run", f"--mount=type=bind,source={data},target=/var/lib/x",
                              "x.sif"], cwd="/", env={})
    assert f"{data}:{data}" in command


def test_an_explicit_userns_is_not_doubled_and_global_options_come_first():
    command = docker_command(["exec", "-u", "x.sif", "true"], cwd="/", env={})
    assert command.count("--userns") == 0 and "-u" in command
    command = docker_command(["--quiet", "run", "x.sif"], cwd="/", env={})
    assert command[command.index(IMAGE) + 1:] == ["apptainer", "--quiet", "run", "--userns",
                                                  "x.sif"]


def test_the_wrappers_run_the_shim_with_this_python(tmp_path: Path):
    import sys

    bin_dir = apptainer.write_wrappers(tmp_path / "bin")
    for name in ("apptainer", "singularity"):
        text = (bin_dir / name).read_text()
        assert f"exec {sys.executable} -m kernbuild.runtime.apptainer" in text
        assert (bin_dir / name).stat().st_mode & 0o111
    before = (bin_dir / "apptainer").stat().st_mtime_ns
    apptainer.write_wrappers(bin_dir)  # unchanged: not rewritten
    assert (bin_dir / "apptainer").stat().st_mtime_ns == before


def test_the_container_carries_the_kernbuild_runs_labels():
    # set by kernbuild for what it runs: the wrapper's container is then reaped with its
    # own when kernbuild was SIGKILLed
    inherited = json.dumps({"org.kernbuild.pid": "4242", "org.kernbuild.owner": "abc"})
    command = docker_command(["--version"], cwd="/", env={INHERITED_LABELS: inherited})
    labels = {command[i + 1] for i, arg in enumerate(command) if arg == "--label"}
    assert labels == {"kernbuild=apptainer", "org.kernbuild.owner=abc",
                      "org.kernbuild.pid=4242"}
    bare = docker_command(["--version"], cwd="/", env={INHERITED_LABELS: "not json"})
    assert [bare[i + 1] for i, arg in enumerate(bare) if arg == "--label"] == [
        "kernbuild=apptainer"]


def test_the_targets_of_one_command_verify_each_sif_once_per_key(tmp_path: Path, monkeypatch):
    """apptainer, sif-bwrap, cwltool's and Toil's targets all check each SIF: the first
    one's verified signature stands for the others of the same context, for that key."""
    from kernbuild.runtime import ImageRef, RuntimeContext

    calls = tmp_path / "calls"
    program = tmp_path / "apptainer"
    program.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    program.chmod(0o755)
    monkeypatch.setattr(apptainer, "locate", lambda _name: str(program))

    class Key:
        def __init__(self, fingerprint: str) -> None:
            self.fingerprint = fingerprint

        def export_secret(self):
            return b"secret"

        def export_public(self, binary=False):
            return b"public"

    def runner(context, key):
        made = apptainer.ApptainerRunner.from_context(context)
        made.use_key(key)
        return made

    def verified() -> int:
        return sum(line.startswith("verify") for line in calls.read_text().splitlines())

    one_key, other_key = Key("A" * 40), Key("B" * 40)
    context = RuntimeContext(lambda: None, tmp_path / "state", tmp_path / "repo", None)
    sif = ImageRef(str(tmp_path / "x.sif"), "sha256:1")
    runner(context, one_key).prepare(sif)
    runner(context, one_key).prepare(sif)
    assert verified() == 1
    runner(context, other_key).prepare(sif)  # another key: its own verdict
    assert verified() == 2
    fresh = RuntimeContext(lambda: None, tmp_path / "state", tmp_path / "repo", None)
    runner(fresh, one_key).prepare(sif)  # another command asks again
    assert verified() == 3
