# -*- coding: utf-8 -*-
"""The collection builds, installs and documents itself; the EE definition is accepted."""

import glob
import os
import subprocess
import sys
import tarfile

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


def test_every_engine_module_is_in_its_action_group():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as f:
        groups = yaml.safe_load(f)["action_groups"]
    for module in _modules():
        engine = module.split("_", 1)[0]
        if engine in ("postgresql", "mysql"):
            assert module in groups[engine], "%s missing from action group %s" % (module, engine)
    assert {"metadata": {"extend_group": ["postgresql", "mysql"]}} in groups["all"]


def test_execution_environment_definition_is_accepted(tmp_path):
    context = tmp_path / "context"
    _run([os.path.join(BIN, "ansible-builder"), "create", "-f", "meta/execution-environment.yml", "-c", str(context)])
    build = context / "_build"
    with open(build / "requirements.txt") as f:
        python_deps = f.read()
    with open(build / "bindep.txt") as f:
        system_deps = f.read()
    assert "psycopg2" in python_deps and "PyMySQL" in python_deps
    assert "libpq" in system_deps
