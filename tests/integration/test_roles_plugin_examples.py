# -*- coding: utf-8 -*-
"""The EXAMPLES of the roles' controller-side plugins run as written against fleet servers.

policy_check, session_enforce and session_report on a PostgreSQL host, session_audit on a
MariaDB host. HOME is a temporary directory, so the examples' ~/dbhygiene paths land there.
"""

import json
import sys
import uuid

import yaml
from ansible_collections.dbhygiene.sessions.plugins.modules import (
    policy_check,
    session_audit,
    session_enforce,
    session_report,
)
from conftest import run_playbook
from dbfleet import holder

PG, MY = "pg3", "mariadb3"


def _examples(module):
    return yaml.safe_load(module.EXAMPLES)


def test_the_role_plugins_examples_run_as_written(fleet, tmp_path):
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "vault_hygiene_password": fleet.password("hygiene"),
                # policy_check's example validates the policy of every host of the play.
                "dbhygiene_policy": {"name": "examples", "rules": [{"states": ["idle"], "idle_longer_than": "30m"}]},
            },
            "hosts": {
                PG: {"ansible_host": fleet.server(PG)["host"], "dbhygiene_engine": "postgresql"},
                MY: {"ansible_host": fleet.server(MY)["host"], "dbhygiene_engine": "mysql"},
            },
        }
    }
    playbook = [
        {
            "name": "EXAMPLES of policy_check, session_enforce and session_report",
            "hosts": PG,
            "gather_facts": False,
            "tasks": _examples(policy_check) + _examples(session_enforce) + _examples(session_report),
        },
        {
            "name": "EXAMPLES of session_audit",
            "hosts": MY,
            "gather_facts": False,
            "tasks": _examples(session_audit),
        },
    ]
    inventory_path = tmp_path / "inventory.yml"
    playbook_path = tmp_path / "examples.yml"
    inventory_path.write_text(yaml.safe_dump(inventory))
    playbook_path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()

    # A bystander the examples must leave alone (young, and protected by nothing else).
    bystander = holder.open_session(fleet, PG, "idle", application="t-%s-bystander" % uuid.uuid4().hex[:8])
    try:
        run = run_playbook(str(playbook_path), inventory=str(inventory_path), env={"HOME": str(home)})
        assert bystander.alive()
    finally:
        bystander.close()
    assert run.rc == 0, run.output
    ran = [r for r in run.results if r["action"].startswith("dbhygiene.sessions.")]
    assert sorted(r["action"].split(".")[-1] for r in ran) == [
        "policy_check",
        "session_audit",
        "session_enforce",
        "session_report",
    ], [(r["task"], r["status"]) for r in ran]
    assert all(r["status"] == "ok" for r in ran), [(r["task"], r["status"], r["result"].get("msg")) for r in ran]

    enforce = run.result(host=PG, task="End the sessions of the policy, from the control node")
    assert enforce["dbhygiene"]["engine"] == "postgresql"
    audit = run.result(host=MY, task="Audit one MariaDB host, alert above 80% of max_connections")
    assert audit["changed"] is False
    reports = home / "dbhygiene" / "reports"
    assert (reports / "enforce-latest.md").is_file() and (reports / "enforce-latest.json").is_file()
    report = json.loads((reports / "enforce-latest.json").read_text())
    assert PG in json.dumps(report)
    assert fleet.password("hygiene") not in (reports / "enforce-latest.json").read_text()
