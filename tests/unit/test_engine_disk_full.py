"""A Docker build that runs out of space ends in kernbuild's DiskFull, one message."""

from __future__ import annotations

import pytest
from docker.errors import BuildError

from kernbuild import engine
from kernbuild.errors import KernError
from kernbuild.fsutil import DiskFull

APT_FULL = ("Get:12 http://deb.debian.org/debian trixie/main amd64 libc6 2.41-12\n"
            "E: You don't have enough free space in /var/cache/apt/archives/.\n")
DPKG_FULL = ("Unpacking nvidia-cuda-toolkit ...\n"
             "dpkg: error processing archive /tmp/x.deb (--unpack):\n"
             " cannot copy extracted data for './usr/lib/libx.so' to '/usr/lib/libx.so.dpkg-new':"
             " failed to write (No space left on device)\n")


class Engine:
    """The two calls engine.build makes, answering as a full engine does."""

    def __init__(self, root, log: str) -> None:
        self.root, self.log, self.builds = root, log, 0
        self.images = self

    def info(self) -> dict:
        return {"DockerRootDir": str(self.root)}

    def build(self, **_options):
        self.builds += 1
        raise BuildError("The command '/bin/sh -c kern-apt-install x' returned a non-zero "
                         "code: 100", [{"stream": line + "\n"} for line in self.log.splitlines()])


@pytest.mark.parametrize("log", [APT_FULL, DPKG_FULL])
def test_a_build_out_of_space_is_disk_full_naming_the_free_space(tmp_path, log):
    client = Engine(tmp_path, log)
    with pytest.raises(DiskFull) as caught:
        engine.build(client, str(tmp_path), "kern/x:1", "hint", retry=lambda _: True)
    message = str(caught.value)
    assert f"no space left on the Docker engine's disk ({tmp_path}, " in message
    assert " free there" in message and "docker system df" in caught.value.hint
    assert caught.value.where == tmp_path
    assert client.builds == 1  # not retried: more of the same would fail the same way


def test_other_failures_stay_build_failures_and_may_be_retried(tmp_path):
    client = Engine(tmp_path, "E: Unable to locate package python3-nosuch\n")
    seen = []
    with pytest.raises(KernError) as caught:
        engine.build(client, str(tmp_path), "kern/x:1", "hint",
                     retry=lambda log: not seen.append(log) and len(seen) == 1)
    assert not isinstance(caught.value, DiskFull)
    assert "Unable to locate package python3-nosuch" in str(caught.value)
    assert client.builds == 2 and "python3-nosuch" in seen[0]


def test_detection_reads_only_a_full_disk(tmp_path):
    client = Engine(tmp_path, "")
    assert engine.disk_full(client, "E: Unable to locate package x", "building x") is None
    assert engine.disk_full(client, "write error: No space left on device", "building x")
