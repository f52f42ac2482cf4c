"""Image plans and writers: one plan, the same install steps in every format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kernbuild.images.build import render_suite
from kernbuild.images.plan import suite_plans as _suite_plans
from kernbuild.images.writers import drift, write_tree
from kernbuild.images.writers import WRITERS
from kernbuild.recipe import load_suite

ROOT = Path(__file__).resolve().parents[2]


def suite_plans(suite):
    return _suite_plans(suite, suite.settings.base_tag)


def plans() -> dict:
    return {plan.name: plan for plan in suite_plans(load_suite(ROOT / "recipes"))}


def test_dockerfiles_directory_is_up_to_date():
    stale = drift(render_suite(load_suite(ROOT / "recipes")), ROOT / "dockerfiles")
    assert stale == [], "dockerfiles/ is out of date: run 'kernbuild render' and commit"


def test_shared_suite_packages_sit_below_the_tool_and_dev_packages_stay_out():
    katpoint = plans()["katpoint"]
    # future is another recipe that katpoint needs at run time, and has an image of its own
    assert [layer.packages for layer in katpoint.layers] == [("python3-future",),
                                                             ("python3-katpoint",)]
    assert [layer.packages for layer in plans()["future"].layers] == [("python3-future",)]
    assert katpoint.tag == "kern/katpoint:1"
    # libwcs8 is in no other image: a layer of its own would only cost bytes
    assert [layer.packages for layer in plans()["wcslib"].layers] == [("libwcs8",
                                                                        "wcslib-tools")]


def test_a_library_two_tools_need_gets_a_shared_layer(tmp_path):
    from tests.conftest import recipe_text

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "libsky.yaml").write_text(recipe_text("libsky").replace(
        "  python3-libsky:\n    architecture: all\n",
        "  libsky1:\n    architecture: any\n    files: [usr/lib]\n"
        "  libsky-dev:\n    architecture: any\n    files: [usr/include]\n"))
    for tool in ("imager", "flagger"):
        (recipes / f"{tool}.yaml").write_text(recipe_text(tool, depends=["libsky1 (>= 1.0)"]))
    suite_plans_ = {p.name: p for p in suite_plans(load_suite(recipes))}
    for tool in ("imager", "flagger"):
        assert [layer.packages for layer in suite_plans_[tool].layers] == [
            ("libsky1",), (f"python3-{tool}",)]
    assert [layer.packages for layer in suite_plans_["libsky"].layers] == [("libsky1",)]


def test_every_writer_installs_the_same_layers():
    for plan in plans().values():
        expected = [" ".join(layer.packages) for layer in plan.layers]
        dockerfile = WRITERS["docker"].render(plan)
        definition = WRITERS["singularity"].render(plan)
        layers = [f"${{KERN_LAYER_{i}}}" for i in range(1, len(expected) + 1)]
        assert re.findall(r'^ARG KERN_LAYER_\d="(.*)"$', dockerfile, re.M) == expected
        assert re.findall(r"^RUN kern-apt-install (?!--setup|--cuda|--components)(.*)$",
                          dockerfile, re.M) == layers
        arguments = definition.split("%arguments\n")[1].split("\n%")[0]
        assert re.findall(r"^    KERN_LAYER_\d=(.*)$", arguments, re.M) == expected
        post = definition.split("%post\n")[1].split("\n%")[0]
        assert re.findall(r"^    kern-apt-install \{\{ (KERN_LAYER_\d) \}\}$", post, re.M) == [
            f"KERN_LAYER_{i}" for i in range(1, len(expected) + 1)]


def test_labels_come_after_the_shared_layers():
    dockerfile = WRITERS["docker"].render(plans()["losoto"])
    lines = dockerfile.splitlines()
    last_run = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    first_label = min(i for i, line in enumerate(lines) if line.startswith("LABEL "))
    assert first_label > last_run


def test_smoke_commands_become_the_definition_test_section():
    definition = WRITERS["singularity"].render(plans()["katpoint"])
    test = definition.split("%test\n", 1)[1].strip().splitlines()
    # set -e: apptainer runs %test with plain sh, which would report only the last step
    assert test[0] == "set -e"
    assert test[1].strip().startswith("sh -c 'python3 -c")


def test_kern_apt_install_is_valid_shell(tmp_path):
    write_tree(render_suite(load_suite(ROOT / "recipes")), tmp_path)
    helper = tmp_path / "kern-apt-install"
    assert helper.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(helper)], check=True)


def test_render_check_fails_on_drift_and_write_fixes_it(tmp_path):
    def kernbuild(*args):
        return subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                               str(ROOT / "recipes"), "--state", str(tmp_path / "state"), *args],
                              capture_output=True, text=True)

    out = tmp_path / "dockerfiles"
    assert kernbuild("render", "-o", str(out)).returncode == 0
    (out / "katpoint/Dockerfile").write_text("FROM scratch\n")
    (out / "gone").mkdir()
    (out / "gone/Dockerfile").write_text("FROM scratch\n")
    check = kernbuild("render", "-o", str(out), "--check")
    assert check.returncode == 1
    assert f"{out}/katpoint/Dockerfile: out of date" in check.stderr
    assert f"{out}/gone/Dockerfile: out of date" in check.stderr
    assert kernbuild("render", "-o", str(out)).returncode == 0
    assert kernbuild("render", "-o", str(out), "--check").returncode == 0
    assert not (out / "gone").exists()


def test_a_recipe_may_keep_its_documentation(tmp_path):
    from tests.conftest import recipe_text

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "manual.yaml").write_text(recipe_text("manual", extra="image: {docs: true}\n"))
    (recipes / "terse.yaml").write_text(recipe_text("terse"))
    plans_ = {p.name: p for p in suite_plans(load_suite(recipes))}
    assert "dpkg-nodoc" not in WRITERS["docker"].render(plans_["manual"])
    assert "dpkg-nodoc" not in WRITERS["singularity"].render(plans_["manual"])
    assert "COPY dpkg-nodoc" in WRITERS["docker"].render(plans_["terse"])


def test_debian_areas_a_recipe_needs_reach_its_image_and_its_users(tmp_path):
    """PGPLOT is in non-free: the image of a recipe that needs it, and of every recipe
    that needs that one, adds the area before installing; other images do not."""
    from kernbuild.images.writers import render_context
    from tests.conftest import recipe_text

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "plotter.yaml").write_text(recipe_text("plotter") + "components: [non-free]\n")
    (recipes / "search.yaml").write_text(recipe_text("search", depends=["python3-plotter"]))
    (recipes / "other.yaml").write_text(recipe_text("other"))
    suite = load_suite(recipes)
    plans = {p.name: p for p in suite_plans(suite)}
    assert plans["plotter"].components == plans["search"].components == ("non-free",)
    assert plans["other"].components == ()
    files = render_context(list(plans.values()))
    for name in ("plotter", "search"):
        dockerfile = files[f"{name}/Dockerfile"]
        assert "RUN kern-apt-install --components non-free\n" in dockerfile
        assert dockerfile.index("--components") < dockerfile.index("KERN_LAYER_1")
        assert "    kern-apt-install --components non-free\n" in files[f"{name}/Singularity.def"]
    assert "--components" not in files["other/Dockerfile"]


def test_kern_apt_install_adds_debian_areas(tmp_path):
    script = Path(__file__).resolve().parents[2] / "kernbuild/images/templates/kern-apt-install"
    root = tmp_path / "etc/apt"
    (root / "sources.list.d").mkdir(parents=True)
    (root / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n")
    (root / "sources.list.d/kern.list").write_text("deb [signed-by=k] file:/repo kern-1 main\n")
    # The script edits /etc/apt: run it against a copy with the paths rewritten.
    text = script.read_text().replace("/etc/apt", str(root))
    (tmp_path / "kai").write_text(text)
    subprocess.run(["sh", str(tmp_path / "kai"), "--components", "contrib non-free"], check=True)
    assert "Components: main contrib non-free\n" in (root / "sources.list.d/debian.sources"
                                                      ).read_text()
    assert (root / "sources.list.d/kern.list").read_text().endswith(" main\n")  # ours: main only


def test_an_image_s_build_inputs_change_with_each_thing_a_build_reads():
    """What :func:`built_already` compares: one changed input, one other key; the same
    inputs given again, the same key."""
    from kernbuild.images.docker import build_inputs

    katpoint, future = plans()["katpoint"], plans()["future"]
    pins = ["python3-future=1.0.0-1kern1", "python3-katpoint=0.10.3-1kern1"]
    labels = {"org.kernsuite.recipe-hash": "r1"}
    key = build_inputs(katpoint, pins, "k" * 64, labels, "sha256:base")
    assert key == build_inputs(katpoint, list(pins), "k" * 64, dict(labels), "sha256:base")
    changed = [
        build_inputs(future, pins, "k" * 64, labels, "sha256:base"),  # another Dockerfile
        build_inputs(katpoint, [pins[0], "python3-katpoint=0.10.3-1kern1+b1"], "k" * 64,
                     labels, "sha256:base"),  # a rebuilt package
        build_inputs(katpoint, pins, "n" * 64, labels, "sha256:base"),  # a new key
        build_inputs(katpoint, pins, "k" * 64, {**labels, "org.kernsuite.recipe-hash": "r2"},
                     "sha256:base"),
        build_inputs(katpoint, pins, "k" * 64, labels, "sha256:moved"),  # the base's tag moved
    ]
    assert len({key, *changed}) == 6
