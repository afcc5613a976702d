# -*- coding: utf-8 -*-
"""The collection builds, installs and documents itself; the EE definition is accepted."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def _run(argv, **kwargs):
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(argv), proc.stdout, proc.stderr)
    return proc.stdout


def _modules():
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))


def test_build_install_and_ansible_doc(tmp_path):
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), "--force"])
    tarballs = glob.glob(str(tmp_path / "dbhygiene-sessions-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert not [n for n in names if n.startswith((".venv", ".build", "tools/", "tests/output", ".git/"))]
    assert "meta/runtime.yml" in names and "meta/execution-environment.yml" in names
    assert "LICENSE" in names and "extensions/awx/credential_types.yml" in names

    install = tmp_path / "installed"
    # Only the fresh install on the collections path: the working tree must not stand in for it.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(install))
    _run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", str(install), tarballs[0]],
        env=env,
    )
    assert os.path.isfile(install / "ansible_collections" / "dbhygiene" / "sessions" / "MANIFEST.json")
    # What an execution-environment build reads from the installed collection.
    deps = _run([os.path.join(BIN, "ansible-builder"), "introspect", str(install)])
    assert "psycopg2" in deps and "PyMySQL" in deps and "libpq" in deps, deps
    listing = _run([os.path.join(BIN, "ansible-doc"), "-t", "module", "-l", "dbhygiene.sessions"], env=env)
    for module in _modules():
        assert "dbhygiene.sessions.%s" % module in listing, listing
    for module in _modules():
        text = _run([os.path.join(BIN, "ansible-doc"), "dbhygiene.sessions.%s" % module], env=env)
        assert "EXAMPLES" in text and "RETURN VALUES" in text, module
        doc = json.loads(_run([os.path.join(BIN, "ansible-doc"), "--json", "dbhygiene.sessions.%s" % module], env=env))
        assert doc["dbhygiene.sessions.%s" % module]["doc"].get("version_added"), module
    for role in ("audit", "enforce"):
        text = _run([os.path.join(BIN, "ansible-doc"), "-t", "role", "dbhygiene.sessions.%s" % role], env=env)
        assert "dbhygiene_report_keep" in text and "dbhygiene_config_file" in text, role


def test_every_engine_module_is_in_its_action_group():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as f:
        groups = yaml.safe_load(f)["action_groups"]
    for module in _modules():
        engine = module.split("_", 1)[0]
        if engine in ("postgresql", "mysql"):
            assert module in groups[engine], "%s missing from action group %s" % (module, engine)
    assert {"metadata": {"extend_group": ["postgresql", "mysql"]}} in groups["all"]


def _ee_layout(tmp_path):
    """The EE definition and its files in a copy of the collection's layout, with a fresh tarball
    in .build/dist where the definition looks for it (the work tree's own .build is left alone)."""
    root = tmp_path / "collection"
    (root / "meta").mkdir(parents=True)
    for name in (
        "execution-environment.yml",
        "decision-environment.yml",
        "requirements.txt",
        "bindep.txt",
        "galaxy-requirements.yml",
    ):
        shutil.copy(os.path.join(ROOT, "meta", name), str(root / "meta" / name))
    dist = root / ".build" / "dist"
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), "--force"])
    return root


def test_execution_environment_pins_its_base_and_installs_the_collection(tmp_path):
    root = _ee_layout(tmp_path)
    with open(os.path.join(ROOT, "meta", "execution-environment.yml")) as f:
        definition = yaml.safe_load(f)
    image = definition["images"]["base_image"]["name"]
    name, _colon, tag = image.rpartition(":")
    assert name and re.match(r"^\d+(\.\d+)+$", tag), "base image not pinned by version: %s" % image

    context = tmp_path / "context"
    _run(
        [
            os.path.join(BIN, "ansible-builder"),
            "create",
            "-f",
            str(root / "meta" / "execution-environment.yml"),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ]
    )
    containerfile = (context / "Containerfile").read_text()
    assert 'EE_BASE_IMAGE="%s"' % image in containerfile
    build = context / "_build"
    python_deps = (build / "requirements.txt").read_text()
    system_deps = (build / "bindep.txt").read_text()
    assert "psycopg2" in python_deps and "PyMySQL" in python_deps
    assert "libpq" in system_deps

    # The collection itself is in the context, as the tarball just built ...
    tarballs = os.listdir(str(build / "collections"))
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        version = yaml.safe_load(f)["version"]
    assert tarballs == ["dbhygiene-sessions-%s.tar.gz" % version]
    with tarfile.open(str(build / "collections" / tarballs[0])) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["name"] == "sessions" and manifest["collection_info"]["version"] == version
    # ... the galaxy stage copies it where the galaxy requirements name it, and installs it.
    with open(str(build / "requirements.yml")) as f:
        wanted = yaml.safe_load(f)["collections"]
    assert wanted == [{"name": "/tmp/dbhygiene-collections/dbhygiene-sessions.tar.gz", "type": "file"}]
    galaxy_stage = containerfile.split("FROM base AS galaxy", 1)[1].split("FROM base AS builder", 1)[0]
    assert "COPY _build/collections/ /tmp/dbhygiene-collections/" in galaxy_stage
    assert "dbhygiene-sessions-*.tar.gz /tmp/dbhygiene-collections/dbhygiene-sessions.tar.gz" in galaxy_stage
    assert "ansible-galaxy collection install" in galaxy_stage and "-r requirements.yml" in galaxy_stage

    # What that stage runs, here: the requirements install the collection from the tarball.
    stage = tmp_path / "stage"
    stage.mkdir()
    shutil.copy(str(build / "collections" / tarballs[0]), str(stage / "dbhygiene-sessions.tar.gz"))
    requirements = tmp_path / "requirements.yml"
    requirements.write_text(
        yaml.safe_dump({"collections": [dict(wanted[0], name=str(stage / "dbhygiene-sessions.tar.gz"))]})
    )
    installed = tmp_path / "installed"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed))
    _run(
        [
            os.path.join(BIN, "ansible-galaxy"),
            "collection",
            "install",
            "-r",
            str(requirements),
            "--collections-path",
            str(installed),
        ],
        env=env,
    )
    assert (installed / "ansible_collections" / "dbhygiene" / "sessions" / "roles" / "enforce").is_dir()


def _pins(path, name):
    """The version `name` is pinned to (==) in a requirements/constraints file."""
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            found = re.match(r"^%s==([\w.]+)\s*$" % re.escape(name), line.strip(), re.IGNORECASE)
            if found:
                return found.group(1)
    raise AssertionError("%s is not pinned in %s" % (name, path))


@pytest.mark.parametrize("definition", ["execution-environment.yml", "decision-environment.yml"])
def test_the_environments_install_a_supported_ansible_core(tmp_path, definition):
    """The core the EE (and the DE) definition resolves to (what ansible-builder puts in the
    Containerfile) is inside requires_ansible, is the newest core the suite runs, and gets a
    Python it runs on; the DE also gets ansible-rulebook (the version the tests run) and Java."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    root = _ee_layout(tmp_path)
    context = tmp_path / "context"
    _run(
        [
            os.path.join(BIN, "ansible-builder"),
            "create",
            "-f",
            str(root / "meta" / definition),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ]
    )
    containerfile = (context / "Containerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"$', containerfile, re.M).group(1).split()
    cores = [ref.split("==", 1)[1] for ref in refs if ref.startswith("ansible-core==")]
    assert len(cores) == 1, "the EE does not pin one ansible-core: %s" % refs
    assert any(ref.startswith("ansible-runner==") for ref in refs), refs
    core = Version(cores[0])
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as f:
        supported = SpecifierSet(yaml.safe_load(f)["requires_ansible"])
    assert core in supported, "the EE installs ansible-core %s, outside requires_ansible %s" % (core, supported)
    assert str(core) == _pins("constraints.txt", "ansible-core"), "the EE's core is not the one make test runs"
    python = re.search(r'^ARG PYCMD="/usr/bin/python(\d+)\.(\d+)"$', containerfile, re.M)
    assert python, "the EE does not name its Python"
    needs = (3, 12) if core >= Version("2.20") else (3, 11) if core >= Version("2.18") else (3, 10)
    assert (int(python.group(1)), int(python.group(2))) >= needs, "ansible-core %s needs Python %s+" % (core, needs)
    if definition == "decision-environment.yml":
        python_deps = (context / "_build" / "requirements.txt").read_text()
        assert "ansible-rulebook==%s" % _pins("requirements-test.txt", "ansible-rulebook") in python_deps
        assert "java-17-openjdk-headless" in (context / "_build" / "bindep.txt").read_text()


def test_a_trial_changelog_release_lists_every_object_once(tmp_path):
    """antsibull-changelog release on a copy: every module, role and playbook is listed once as
    new, and no documentation markup (C(...), ...) is left literal."""
    copy = tmp_path / "ansible_collections" / "dbhygiene" / "sessions"
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source) and not name.startswith("tests/output/"):
            os.makedirs(str((copy / name).parent), exist_ok=True)
            shutil.copy(source, str(copy / name), follow_symlinks=False)
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        version = yaml.safe_load(f)["version"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), PATH=BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(
        [os.path.join(BIN, "antsibull-changelog"), "release", "--version", version],
        cwd=str(copy),
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (copy / "CHANGELOG.rst").read_text()
    listed = re.findall(r"^- dbhygiene\.sessions\.(\w+) - ", text, re.M)
    sections = {}
    for title, body in re.findall(r"^(New \w+)\n-+\n\n((?:- .*\n)+)", text, re.M):
        sections[title] = re.findall(r"^- dbhygiene\.sessions\.(\w+) - ", body, re.M)
    assert sorted(sections.get("New Modules", [])) == _modules(), sections
    roles = sorted(os.listdir(os.path.join(ROOT, "roles")))
    assert sorted(sections.get("New Roles", [])) == roles, sections
    playbooks = sorted(p[:-4] for p in os.listdir(os.path.join(ROOT, "playbooks")) if p.endswith(".yml"))
    assert sorted(sections.get("New Playbooks", [])) == playbooks, sections
    assert len(listed) == len(_modules()) + len(roles) + len(playbooks), listed
    literal = re.findall(r"\b[CMVOIBEU]\([^)]*\)", text)
    assert not literal, "markup left literal in the changelog: %s" % literal
    for path in re.findall(r"``((?:extensions|plugins|playbooks)/[\w./-]+)``", text):
        assert os.path.exists(os.path.join(ROOT, path)), "the changelog cites %s, which does not exist" % path
