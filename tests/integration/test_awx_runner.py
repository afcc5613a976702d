# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX jobs as AWX runs them (issue 21): ansible-runner on a private data dir laid out as AWX
writes it — env/extravars (the credential types' injectors of extensions/awx/credential_types.yml
rendered with a credential's inputs, plus AWX's own job variables), env/envvars, env/cmdline
(a check job's --check --diff), inventory/ (hosts and group_vars), project/ (the playbooks) —
and the job's events and artifacts read back as AWX reads them (the stats event's
artifact_data: what set_stats published).

One mixed fleet (pg1 + mariadb1), one login per engine from the two per-engine credential
types (the generic login in the inventory is wrong), a check job then a real job: their
artifacts differ by check_mode, the check job's reports never replace the real job's -latest,
the ghosts are ended by the real job only, and no password shows in the job's output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import time

import pytest
import yaml
from _roles_fixtures import ROOT, close_all, edit_inventory, live_sessions, new_tag, open_sessions, write_inventory
from conftest import ansible_env
from test_roles_enforce import _ghost_policy, _group_vars, _injected, _login_like_hygiene

ansible_runner = pytest.importorskip("ansible_runner")

HOSTS = ("pg1", "mariadb1")


def _private_data_dir(fleet, tmp_path, tag, extravars):
    """The private data dir of one AWX job: inventory (the fleet's hosts, the generic login wrong),
    project (the collection's playbooks, as a project checkout), env/extravars and env/envvars."""
    pdd = tmp_path / "job"
    shutil.copytree(os.path.join(ROOT, "playbooks"), str(pdd / "project"))
    inventory = write_inventory(fleet, str(pdd / "inventory"), _group_vars(tmp_path, _ghost_policy(tag)), hosts=HOSTS)

    def generic_login_is_wrong(groups):
        for group in groups.values():
            group["vars"]["dbhygiene_login_user"] = "hygiene"
            group["vars"]["dbhygiene_login_password"] = "not-the-password"

    edit_inventory(inventory, generic_login_is_wrong)
    os.rename(inventory, str(pdd / "inventory" / "hosts"))
    (pdd / "env").mkdir()
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    env = ansible_env()
    # What the execution environment has: the collection installed, the interpreter; no callback of the tests.
    names = ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_PYTHON_INTERPRETER", "PYTHONPATH", "ANSIBLE_LOCALHOST_WARNING")
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({name: env[name] for name in names}))
    return pdd


def _job(pdd, ident, check):
    """One job (AWX job type check: --check --diff); (runner, artifact_data, stdout)."""
    cmdline = pdd / "env" / "cmdline"
    if check:
        cmdline.write_text("--check --diff")
    elif cmdline.exists():
        cmdline.unlink()
    runner = ansible_runner.run(private_data_dir=str(pdd), playbook="enforce.yml", ident=ident, quiet=True)
    stats = [e for e in runner.events if e.get("event") == "playbook_on_stats"]
    assert len(stats) == 1, runner.status
    with open(os.path.join(str(pdd), "artifacts", ident, "stdout")) as handle:
        stdout = handle.read()
    return runner, stats[0]["event_data"].get("artifact_data") or {}, stdout


def test_an_awx_check_job_then_a_real_job_on_a_mixed_fleet_with_a_login_per_engine(fleet, tmp_path):
    tag = new_tag("awx")
    suffix = tag.rsplit("-", 1)[1]
    logins = {"postgresql": ("awx_pg_" + suffix, "pg-" + suffix * 2), "mysql": ("awx_my_" + suffix, "my-" + suffix * 2)}
    with open(os.path.join(ROOT, "extensions", "awx", "credential_types.yml")) as handle:
        types = {t["name"]: t for t in yaml.safe_load(handle)["credential_types"]}
    extravars = {"awx_job_id": 4242, "awx_job_template_name": "sweep", "awx_user_name": "admin"}
    for engine, title in (("postgresql", "PostgreSQL"), ("mysql", "MySQL")):
        user, password = logins[engine]
        inputs = {"username": user, "password": password}
        extravars.update(_injected(types["dbhygiene.sessions %s login" % title], inputs, str(tmp_path)))
    pdd = _private_data_dir(fleet, tmp_path, tag, extravars)
    droppers = [_login_like_hygiene(fleet, "pg1", *logins["postgresql"])]
    droppers.append(_login_like_hygiene(fleet, "mariadb1", *logins["mysql"]))
    held = open_sessions(fleet, [(h, "idle", "%s-ghost" % tag) for h in HOSTS])
    reports = tmp_path / "reports"
    try:
        time.sleep(1.5)  # the ghosts idle longer than the policy's 1 s
        runner, artifact, stdout = _job(pdd, "1", check=True)
        assert runner.rc == 0 and runner.status == "successful", stdout[-4000:]
        dry = artifact["dbhygiene_enforce"]
        assert dry["check_mode"] is True and dry["ended"] == 2 and dry["failed"] == 0, dry
        assert all(live_sessions(fleet, host, tag) != {} for host in HOSTS)  # a rehearsal ends nothing
        assert (reports / "enforce-check-latest.json").exists() and not (reports / "enforce-latest.json").exists()

        runner, artifact, stdout_real = _job(pdd, "2", check=False)
        assert runner.rc == 0 and runner.status == "successful", stdout_real[-4000:]
        real = artifact["dbhygiene_enforce"]
        assert real["check_mode"] is False and real["ended"] == 2 and real["failed"] == 0, real
        assert all(live_sessions(fleet, host, tag) == {} for host in HOSTS)
        latest = json.loads((reports / "enforce-latest.json").read_text())
        assert latest["check_mode"] is False and latest["job_id"] == 4242, {k: latest.get(k) for k in ("check_mode",)}

        # another rehearsal: its own -check-latest, the real job's -latest untouched
        before = (reports / "enforce-latest.json").read_bytes()
        runner, artifact, stdout_again = _job(pdd, "3", check=True)
        assert runner.rc == 0 and artifact["dbhygiene_enforce"]["check_mode"] is True
        assert (reports / "enforce-latest.json").read_bytes() == before
        for _user, password in logins.values():
            for text in (stdout, stdout_real, stdout_again, (tmp_path / "audit.jsonl").read_text()):
                assert password not in text
    finally:
        close_all(held)
        for drop in droppers:
            drop()
