# -*- coding: utf-8 -*-
"""ansible-doc renders every plugin and role of the collection, on the core that runs the tests.

`make test` runs this file on both ends of the supported range (ansible-core 2.16 and the
newest): the docs must parse and render on each, without a warning.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, ansible_env

MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
ROLES = sorted(
    os.path.basename(os.path.dirname(os.path.dirname(p)))
    for p in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))
)
ENGINE_MODULES = ["mysql_session_info", "mysql_sessions", "postgresql_session_info", "postgresql_sessions"]


def ansible_doc(*args):
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-doc")] + list(args),
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "does not support Ansible version" not in proc.stderr, proc.stderr
    # ansible-core 2.21's `ansible-doc -t role` warns about a collection of its own
    # (ansible/_internal/.../_protomatter has no MANIFEST.json): not ours, so not counted.
    ours = [
        line
        for line in proc.stderr.splitlines()
        if any(word in line for word in ("[WARNING]", "[ERROR]", "[DEPRECATION WARNING]"))
        and "/ansible/_internal/ansible_collections/" not in line
    ]
    assert not ours, proc.stderr
    return proc.stdout


def fqcn(name):
    return "dbhygiene.sessions." + name


def test_the_collection_has_what_is_checked():
    assert set(ENGINE_MODULES) <= set(MODULES) and ROLES, (MODULES, ROLES)


def test_every_module_is_listed():
    listed = ansible_doc("-t", "module", "-l", "dbhygiene.sessions")
    assert sorted(line.split()[0] for line in listed.splitlines() if line.strip()) == [fqcn(m) for m in MODULES]


@pytest.mark.parametrize("kind, names", [("module", MODULES), ("role", ROLES)])
def test_every_plugin_and_role_renders(kind, names):
    text = ansible_doc("-t", kind, *[fqcn(n) for n in names])
    for name in names:
        assert fqcn(name) in text.lower(), text[:2000]
    data = json.loads(ansible_doc("-t", kind, "--json", *[fqcn(n) for n in names]))
    assert sorted(data) == sorted(fqcn(n) for n in names)
    for name in names:
        entry = data[fqcn(name)]
        if kind == "module":
            assert entry["doc"]["short_description"] and entry["doc"]["description"], name
            assert re.match(r"^\d+\.\d+\.\d+$", str(entry["doc"].get("version_added"))), name
            if name in ENGINE_MODULES:
                assert entry["doc"]["version_added"] == "0.1.0", name
        else:
            main = entry["entry_points"]["main"]
            assert main["short_description"] and main["options"], name
