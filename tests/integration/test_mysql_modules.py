# -*- coding: utf-8 -*-
"""mysql_session_info and mysql_sessions, run by Ansible against real MariaDB servers.

Each test holds sessions of its own (program_name under a unique prefix, or a
login of its own) and scopes every rule to them; after each run the server's
real state is checked through the admin login (HeldSession.alive / .state).
"""

import json
import os
import time
import uuid

import pytest
import yaml
from conftest import lift_share_limit, run_module, run_playbook, wait_older, wait_until, young_threshold

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)
from _mysql_fixtures import LEAST_PRIVILEGE_GRANTS

from ansible_collections.dbhygiene.sessions.plugins.modules import mysql_session_info, mysql_sessions  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

SESSIONS = "dbhygiene.sessions.mysql_sessions"
INFO = "dbhygiene.sessions.mysql_session_info"


def sweep(fleet, policy, **conn):
    args = fx.module_conn(fleet, **conn)
    args.update(policy=lift_share_limit(policy), wait_timeout=5)
    return args


def test_a_mix_ends_only_the_right_sessions(fleet, my_held, my_tag, my_user):
    # A login of this test only, so that a rule can name our own connection without touching anyone else's.
    login, password = my_user(grants=fx.LEAST_PRIVILEGE_GRANTS)
    ghost = my_held("idle", application=my_tag + "-ghost")
    stuck = my_held("idle_in_transaction", application=my_tag + "-stuck")
    runaway = my_held("active", application=my_tag + "-runaway", seconds=600)
    admin_idle = my_held("idle", user="fleet_admin", application=my_tag + "-admin")
    protected = my_held("idle", user="app2", application=my_tag + "-protected")
    young = my_held("idle", application=my_tag + "-young")
    # The young session must stay under the rules' age while ansible-playbook starts (4 s and more on a
    # busy machine): an age measured from a run now; the others older than it as the server sees them.
    age = young_threshold()
    wait_older([ghost, stuck, runaway, admin_idle, protected], age)
    young.execute("SELECT 1")
    policy = {
        "name": "mix",
        "rules": [
            {"name": "ghost", "states": ["idle"], "applications": [my_tag + "-*"], "idle_longer_than": age},
            {
                "name": "stuck",
                "states": ["idle_in_transaction"],
                "applications": [my_tag + "-*"],
                "idle_longer_than": age,
            },
            {"name": "runaway", "states": ["active"], "applications": [my_tag + "-*"], "running_longer_than": age},
            {"name": "ourselves", "users": [login], "applications": ["dbhygiene.sessions"]},
        ],
        "protect": {"users": ["app2"]},
    }
    result, dummy = run_module(SESSIONS, sweep(fleet, policy, user=login, password=password), diff=True)
    assert result["changed"] is True, result
    assert {e["id"]: e["rule"] for e in result["terminated"]} == {
        ghost.id: "ghost",
        stuck.id: "stuck",
        runaway.id: "runaway",
    }
    reasons = dict((e["id"], e["detail"]) for e in result["not_ended"])
    assert reasons == {admin_idle.id: "superuser", protected.id: "protect.users matches 'app2'"}
    assert not ghost.alive() and not stuck.alive() and not runaway.alive()
    assert admin_idle.alive() and protected.alive() and young.alive()
    # a line of the listing starts with the id (a bare id, one digit on a new fleet, is in "6 client sessions")
    line = "\n%d app@" % ghost.id
    assert line in result["diff"]["before"] and line not in result["diff"]["after"]


@pytest.mark.parametrize("check", [False, True])
def test_a_login_without_the_grants_fails_clearly(fleet, my_held, my_tag, check):
    victim = my_held("idle", application=my_tag)
    policy = {"rules": [{"applications": [my_tag]}]}
    result, dummy = run_module(SESSIONS, sweep(fleet, policy, user="nopriv"), check=check)
    assert result.get("failed") is True
    assert "lacks PROCESS" in result["msg"] and "GRANT PROCESS ON *.* TO 'nopriv'@'%'" in result["msg"]
    assert "lacks CONNECTION ADMIN" in result["msg"]
    assert victim.alive()
    result, dummy = run_module(INFO, fx.module_conn(fleet, user="nopriv"))
    assert result.get("failed") is True and "GRANT PROCESS" in result["msg"]


def test_a_login_that_can_see_but_not_kill(fleet, my_held, my_tag, my_user):
    user, password = my_user(grants=["GRANT PROCESS ON *.* TO %s@%s"])
    victim = my_held("idle", application=my_tag)
    result, dummy = run_module(SESSIONS, sweep(fleet, {"rules": [{"users": ["app"]}]}, user=user, password=password))
    assert result.get("failed") is True
    assert "GRANT CONNECTION ADMIN ON *.* TO '%s'@'%%'" % user in result["msg"]
    assert password not in json.dumps(result)
    assert victim.alive()


def test_read_grants_are_required_only_for_what_the_policy_uses(fleet, my_held, my_user):
    # A login with PROCESS and CONNECTION ADMIN but neither read grant.
    login, password = my_user(grants=[LEAST_PRIVILEGE_GRANTS[0]])
    owner, owner_password = my_user()
    victim = my_held("idle", user=owner, password=owner_password, application="plain")
    time.sleep(1.1)
    scoped = {"rules": [{"users": [owner], "idle_longer_than": 1}]}

    # Default policy: superusers protected, which needs to read who is a superuser.
    result, dummy = run_module(SESSIONS, sweep(fleet, scoped, user=login, password=password), check=True)
    assert result.get("failed") is True
    assert "GRANT SELECT (User, Host, Super_priv) ON mysql.user" in result["msg"], result["msg"]
    # Matching on applications needs program_name.
    by_app = {"protect": {"superusers": False}, "rules": [{"applications": ["plain"], "users": [owner]}]}
    result, dummy = run_module(SESSIONS, sweep(fleet, by_app, user=login, password=password), check=True)
    assert result.get("failed") is True and "performance_schema.session_connect_attrs" in result["msg"]
    assert victim.alive()

    # Neither: the same login ends the session.
    result, dummy = run_module(
        SESSIONS, sweep(fleet, dict(scoped, protect={"superusers": False}), user=login, password=password)
    )
    assert result.get("failed") is not True, result.get("msg")
    assert [s["id"] for s in result["terminated"]] == [victim.id]
    assert wait_until(lambda: not victim.alive())


def test_session_info_with_the_least_privileged_login(fleet, my_held, my_tag):
    trx = my_held("idle_in_transaction", application=my_tag)
    result, dummy = run_module(INFO, fx.module_conn(fleet), check=True)
    assert result["changed"] is False
    mine = fx.mine(result["sessions"], my_tag)
    assert [(s["id"], s["state"]) for s in mine] == [(trx.id, "idle_in_transaction")]
    assert result["server"]["flavour"] == "mariadb" and result["server"]["login_user"] == "hygiene@%"
    assert result["server"]["own_id"] not in [s["id"] for s in result["sessions"]]
    assert result["summary"]["total"] == len(result["sessions"])


def test_tls_with_the_fleet_ca(fleet):
    conn = fx.module_conn(fleet, ca_cert=fleet.pki["ca_cert"], check_hostname=True)
    result, dummy = run_module(INFO, conn)
    assert not result.get("failed"), result
    client = fleet.pki["clients"]["hygiene_cert"]
    conn = fx.module_conn(
        fleet,
        user="hygiene_cert",
        password=fleet.password("hygiene"),
        ca_cert=fleet.pki["ca_cert"],
        client_cert=client["cert"],
        client_key=client["key"],
    )
    result, dummy = run_module(INFO, conn)
    assert not result.get("failed"), result
    assert result["server"]["login_user"] == "hygiene_cert@%"


UNREACHABLE = {"login_port": 1, "connect_timeout": 2}


# The policy's own errors, the same on both engines, are in test_session_modules.py.
@pytest.mark.parametrize(
    "policy, options, needles",
    [
        ({"rules": [{"connected_longer_than": "1h"}]}, {}, ["connected_longer_than", "cannot evaluate"]),
        ({"rules": [{"users": ["app"]}]}, {"login_port": 70000}, ["login_port", "70000"]),
        ({"rules": [{"users": ["app"]}]}, {"ca_cert": "/nonexistent/ca.pem"}, ["ca_cert", "/nonexistent/ca.pem"]),
        (
            {"rules": [{"users": ["app"]}]},
            {"config_file": "/nonexistent/my.cnf"},
            ["config_file", "/nonexistent/my.cnf"],
        ),
    ],
)
def test_bad_input_fails_before_connecting(fleet, policy, options, needles):
    args = sweep(fleet, policy)
    args.update(UNREACHABLE)
    args.update(options)
    result, dummy = run_module(SESSIONS, args)
    assert result.get("failed") is True
    for needle in needles:
        assert needle in result["msg"], result["msg"]
    assert "cannot connect" not in result["msg"]


def test_hostile_strings_in_sessions_and_globs(fleet, my_held, my_tag, my_user):
    user, password = my_user(name="t'%s;`x" + my_tag[2:6])
    odd_user = my_held("idle", user=user, password=password, application=my_tag + "-u")
    odd_app = my_held("idle", application=my_tag + fx.HOSTILE)
    plain = my_held("idle", application=my_tag + "-plain")
    time.sleep(1.1)
    policy = {
        "name": fx.HOSTILE,
        "rules": [
            {"name": "user-glob", "users": ["t'%s;`x*"], "applications": [my_tag + "-u"]},
            {"name": "app-glob", "applications": [my_tag + 'it\'s "odd" `x`; %s*']},
        ],
    }
    result, dummy = run_module(SESSIONS, sweep(fleet, policy))
    assert {e["id"]: e["rule"] for e in result["terminated"]} == {odd_user.id: "user-glob", odd_app.id: "app-glob"}
    assert result["policy"]["name"] == fx.HOSTILE
    assert not odd_user.alive() and not odd_app.alive()
    assert plain.alive()


# ---------------------------------------------------------------- EXAMPLES as written
def _examples(module):
    return yaml.safe_load(module.EXAMPLES)


def test_examples_run_as_written(fleet, my_held, tmp_path):
    server = "mariadb3"
    bystander = my_held("idle", server=server, application="t-%s-bystander" % uuid.uuid4().hex[:8])
    srv = fleet.server(server)
    playbook = [
        {
            "name": "EXAMPLES of the MySQL modules",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": {
                "group/dbhygiene.sessions.mysql": {
                    "login_host": srv["host"],
                    "login_user": "hygiene",
                    "login_password": fleet.password("hygiene"),
                }
            },
            "vars": {
                "mysql_host": srv["host"],
                "mysql_hygiene_password": fleet.password("hygiene"),
                "mysql_ca_cert": fleet.pki["ca_cert"],
            },
            "tasks": _examples(mysql_session_info) + _examples(mysql_sessions),
        }
    ]
    path = os.path.join(str(tmp_path), "examples.yml")
    with open(path, "w") as f:
        yaml.safe_dump(playbook, f, sort_keys=False)
    run = run_playbook(path)
    assert run.rc == 0, run.output
    ran = [r for r in run.results if r["action"].startswith("dbhygiene.sessions.")]
    assert len(ran) == 7 and all(r["status"] == "ok" for r in ran), [(r["task"], r["status"]) for r in ran]
    assert bystander.alive()


# ---------------------------------------------------------------- one policy, two engines
def test_the_same_policy_ends_the_equivalent_sessions_on_both_engines(fleet, my_held, tmp_path):
    tag = "t-%s" % uuid.uuid4().hex[:8]
    held = {}
    for server in ("pg3", "mariadb2"):
        held[server] = {
            "ghost": my_held("idle", server=server, application=tag + "-ghost"),
            "stuck": my_held("idle_in_transaction", server=server, application=tag + "-stuck"),
            "fresh": my_held("active", server=server, application=tag + "-fresh", seconds=60),
            "kept": my_held("idle", server=server, user="backup_agent", application=tag + "-ghost"),
        }
    time.sleep(1.2)
    policy = {
        "name": "two-engines",
        "rules": [
            {"name": "ghost", "states": ["idle"], "applications": [tag + "-*"], "idle_longer_than": 1},
            {
                "name": "stuck",
                "states": ["idle_in_transaction"],
                "applications": [tag + "-*"],
                "transaction_longer_than": 0,
            },
            {"name": "runaway", "states": ["active"], "applications": [tag + "-*"], "running_longer_than": "1h"},
        ],
        "protect": {"users": ["backup_*"]},
        "limits": {"max_terminations": 5},
    }
    policy_file = os.path.join(str(tmp_path), "policy.yml")
    with open(policy_file, "w") as f:
        yaml.safe_dump(policy, f)
    pg, my = fleet.server("pg3"), fleet.server("mariadb2")
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"the_policy": "{{ lookup('file', '%s') | from_yaml }}" % policy_file},
            "tasks": [
                {
                    "name": "postgresql",
                    "dbhygiene.sessions.postgresql_sessions": {
                        "login_host": pg["host"],
                        "login_user": "hygiene",
                        "login_password": fleet.password("hygiene"),
                        "ssl_mode": "disable",
                        "policy": "{{ the_policy }}",
                    },
                    "register": "pg_result",
                },
                {
                    "name": "mysql",
                    "dbhygiene.sessions.mysql_sessions": {
                        "login_host": my["host"],
                        "login_user": "hygiene",
                        "login_password": fleet.password("hygiene"),
                        "policy": "{{ the_policy }}",
                    },
                    "register": "my_result",
                },
                {
                    "name": "results",
                    "ansible.builtin.debug": {"msg": {"postgresql": "{{ pg_result }}", "mysql": "{{ my_result }}"}},
                },
            ],
        }
    ]
    path = os.path.join(str(tmp_path), "two.yml")
    with open(path, "w") as f:
        yaml.safe_dump(playbook, f, sort_keys=False)
    run = run_playbook(path)
    assert run.rc == 0, run.output
    for task, server in (("postgresql", "pg3"), ("mysql", "mariadb2")):
        result = run.result(task="results")["msg"][task]
        h = held[server]
        assert {e["id"]: e["rule"] for e in result["terminated"]} == {h["ghost"].id: "ghost", h["stuck"].id: "stuck"}
        assert [(e["id"], e["reason"]) for e in result["not_ended"]] == [(h["kept"].id, "protected")]
        assert not h["ghost"].alive() and not h["stuck"].alive()
        assert h["fresh"].alive() and h["kept"].alive()
