"""Build-dependency snapshots: what names one, read off apt's own output."""
# ruff: noqa: E501  (apt's lines as it prints them)

from kernbuild.build.snapshots import Resolution, snapshot_key, tag_of

# apt-get --print-uris -qq build-dep, as apt 3 prints it in trixie; a file: source is
# kernbuild's repository, mounted under a path that names its generation.
PRINTED = """\
'http://deb.debian.org/debian/pool/main/g/gsl/libgsl28_2.8%2bdfsg-5_amd64.deb' libgsl28_2.8+dfsg-5_amd64.deb 993848 MD5Sum:adbae75f215e3f37ff4e91b3bf21ded9
'http://deb.debian.org/debian/pool/main/l/lapack/libblas3_3.12.1-6_amd64.deb' libblas3_3.12.1-6_amd64.deb 159604 MD5Sum:009269addf607682ff0a0def1acfbafe
'file:/kern-repo/generations/7/pool/main/w/wcslib/libwcs8_8.4-1kern1_amd64.deb' libwcs8_8.4-1kern1_amd64.deb 287856 MD5Sum:87755f717829e939a768ffdec1652ee9
"""


def test_the_files_are_read_sorted_and_apts_other_lines_left_out():
    resolved = Resolution.parse("W: some note from apt on stderr\n" + PRINTED + "\n")
    assert [name for name, _, _ in resolved.files] == [
        "libblas3_3.12.1-6_amd64.deb", "libgsl28_2.8+dfsg-5_amd64.deb",
        "libwcs8_8.4-1kern1_amd64.deb"]
    assert resolved.files[0][1:] == (159604, "MD5Sum:009269addf607682ff0a0def1acfbafe")
    assert Resolution.parse("") == Resolution(())


def test_the_key_is_the_build_image_and_the_files_but_not_where_they_come_from():
    resolved = Resolution.parse(PRINTED)
    key = snapshot_key("sha256:image", resolved)
    # The next generation of kernbuild's repository, another mirror, another order.
    moved = PRINTED.replace("generations/7", "generations/8").replace(
        "deb.debian.org", "ftp.ch.debian.org")
    reordered = "\n".join(reversed(moved.splitlines()))
    assert snapshot_key("sha256:image", Resolution.parse(reordered)) == key
    # A rebuilt package of the same name (new bytes), a new build image, one file more.
    rebuilt = PRINTED.replace("87755f717829e939a768ffdec1652ee9",
                              "0f55f717829e939a768ffdec1652ee99")
    assert snapshot_key("sha256:image", Resolution.parse(rebuilt)) != key
    assert snapshot_key("sha256:other", resolved) != key
    fewer = "\n".join(PRINTED.splitlines()[:2])
    assert snapshot_key("sha256:image", Resolution.parse(fewer)) != key
    assert tag_of(key) == f"kern/build-deps:{key[:32]}"
