# -*- coding: utf-8 -*-
"""postgresql_session_info and postgresql_sessions, run by Ansible against real servers.

Each test holds sessions of its own (application names under a unique prefix)
and scopes every rule to them; after each run the server's real state is
checked through the admin login (HeldSession.alive / .state).
"""

import os
import time
import uuid

import pytest
import yaml
from conftest import ids, lift_share_limit, run_module, run_playbook, wait_older, wait_until, young_threshold

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.modules import postgresql_session_info, postgresql_sessions

pytest_plugins = ["_postgresql_fixtures"]

SERVER = "pg2"
SESSIONS = "dbhygiene.sessions.postgresql_sessions"
INFO = "dbhygiene.sessions.postgresql_session_info"


def login(fleet, server=SERVER, **overrides):
    """Module arguments to connect as the fleet's least-privilege login."""
    args = fx.conn_params(fleet, server)
    del args["ssl_mode"]  # the module's default (prefer): TLS when the server offers it
    args.update(overrides)
    return args


def sessions_run(fleet, policy, check=False, diff=False, verbosity=0, env=None, **overrides):
    args = login(fleet, **overrides)
    args["policy"] = lift_share_limit(policy)
    return run_module(SESSIONS, args, check=check, diff=diff, verbosity=verbosity, env=env)


@pytest.fixture
def held(pg_held):
    return lambda kind, **kwargs: pg_held(SERVER, kind, **kwargs)


# ---------------------------------------------------------------- a mix
def test_a_mix_ends_only_the_right_sessions(fleet, held, pg_tag):
    app = pg_tag + "-%s"
    ghosts = [held("idle", application=app % "ghost") for dummy in range(2)]
    stuck = held("idle_in_transaction", application=app % "stuck")
    runaway = held("active", application=app % "runaway", seconds=120)
    superuser = held("idle", user="fleet_admin", application=app % "su")
    backup = held("idle", user="backup_agent", application=app % "backup")
    young = held("idle", application=app % "young")
    # The young session must stay under the rules' age while ansible-playbook starts (4 s and more on a
    # busy machine): an age measured from a run now; the others older than it as the server sees them.
    age = young_threshold()
    wait_older(ghosts + [stuck, superuser, backup], age)
    young.execute("SELECT 1")
    policy = {
        "name": "mix",
        "rules": [
            {
                "name": "ghost-idle",
                "states": ["idle"],
                "idle_longer_than": "%ds" % age,
                "applications": [pg_tag + "-*"],
            },
            {
                "name": "stuck",
                "states": ["idle_in_transaction"],
                "idle_longer_than": age,
                "applications": [pg_tag + "-*"],
            },
            {
                "name": "runaway",
                "states": ["active"],
                "running_longer_than": "1s",
                "applications": [pg_tag + "-*"],
                "action": "cancel",
            },
        ],
        "protect": {"users": ["backup_*"]},
    }
    result, run = sessions_run(fleet, policy)
    assert not result.get("failed"), run.output
    assert ids(result["terminated"]) == sorted([g.id for g in ghosts] + [stuck.id])
    assert ids(result["cancelled"]) == [runaway.id]
    not_ended = {e["id"]: (e["reason"], e["detail"]) for e in result["not_ended"]}
    assert not_ended == {
        superuser.id: ("protected", "superuser"),
        backup.id: ("protected", "protect.users matches 'backup_*'"),
    }
    assert result["matched"] == 6
    everyone = result["terminated"] + result["cancelled"] + result["not_ended"]
    assert not [e for e in everyone if (e["application"] or "").startswith("dbhygiene.sessions")]  # never ourselves

    assert not any(s.alive() for s in ghosts + [stuck])
    assert runaway.alive() and wait_until(lambda: runaway.state() == "idle")  # query stopped, connection kept
    assert superuser.alive() and backup.alive() and young.alive()


# ---------------------------------------------------------------- privileges
@pytest.mark.parametrize("check", [False, True], ids=["real", "check"])
def test_a_login_without_the_grants_fails_clearly(fleet, held, pg_tag, check):
    victim = held("idle", application=pg_tag + "-v")
    policy = {"rules": [{"applications": [pg_tag + "-*"]}]}
    result, run = sessions_run(fleet, policy, check=check, login_user="nopriv", login_password=fleet.password("nopriv"))
    assert result.get("failed") is True
    assert "login nopriv on PostgreSQL at %s:5432" % fleet.server(SERVER)["host"] in result["msg"]
    assert 'GRANT pg_read_all_stats TO "nopriv"; GRANT pg_signal_backend TO "nopriv"' in result["msg"]
    assert victim.alive()

    result, run = run_module(INFO, login(fleet, login_user="nopriv", login_password=fleet.password("nopriv")))
    assert result.get("failed") is True and "lacks pg_read_all_stats" in result["msg"]
    assert "pg_signal_backend" not in result["msg"]  # the info module never signals


def test_session_info_lists_with_the_least_privileged_login(fleet, held, pg_tag):
    idle = held("idle", application=pg_tag + "-idle")
    stuck = held("idle_in_transaction", user="app2", application=pg_tag + "-stuck")
    for check in (False, True):
        result, run = run_module(INFO, login(fleet), check=check)
        assert not result.get("failed") and result["changed"] is False, run.output
        mine = {s["id"]: s for s in result["sessions"] if (s["application"] or "").startswith(pg_tag)}
        assert {pid: s["state"] for pid, s in mine.items()} == {idle.id: "idle", stuck.id: "idle_in_transaction"}
        assert mine[stuck.id]["user"] == "app2" and mine[stuck.id]["transaction_seconds"] >= 0
        assert result["summary"]["total"] == len(result["sessions"]) >= 2
        assert result["server"]["login_user"] == "hygiene" and result["server"]["login_superuser"] is False
        assert result["server"]["own_pid"] not in [s["id"] for s in result["sessions"]]
    assert idle.alive() and stuck.alive()


# ---------------------------------------------------------------- TLS
def test_tls_verify_full(fleet):
    result, run = run_module(INFO, login(fleet, ssl_mode="verify-full", ca_cert=fleet.pki["ca_cert"]))
    assert not result.get("failed"), run.output
    client = fleet.pki["clients"]["hygiene_cert"]
    cert_login = login(
        fleet,
        login_user="hygiene_cert",
        ssl_mode="verify-full",
        ca_cert=fleet.pki["ca_cert"],
        ssl_cert=client["cert"],
        ssl_key=client["key"],
    )
    del cert_login["login_password"]
    result, run = run_module(INFO, cert_login)
    assert not result.get("failed"), run.output
    assert result["server"]["login_user"] == "hygiene_cert"


# ---------------------------------------------------------------- hostile strings
def test_hostile_strings_in_sessions_and_globs(fleet, held, pg_tag, pg_role):
    hostile_app = pg_tag + "-" + fx.HOSTILE
    plain = held("idle", application=pg_tag + "-plain")
    odd = held("idle", application=hostile_app)
    user = "t_" + uuid.uuid4().hex[:6] + fx.HOSTILE
    odd_user = held(
        "idle", user=user, password=pg_role(SERVER, user), application=pg_tag + "-user", database="postgres"
    )
    odd_user.execute("SELECT 'it''s; %s %(x)s -- \"q\"' AS x")
    time.sleep(1.2)
    policy = {
        "name": fx.HOSTILE,
        "rules": [
            {"name": "app-glob", "applications": [pg_tag + '-it\'s "odd"; %s %(x)s -- ;DROP*'], "idle_longer_than": 1},
            {"name": "user-glob", "users": ["t_*" + fx.HOSTILE[:12] + "*"], "applications": [pg_tag + "-*"]},
        ],
    }
    result, run = sessions_run(fleet, policy, diff=True)
    assert not result.get("failed"), run.output
    assert {e["id"]: e["rule"] for e in result["terminated"]} == {odd.id: "app-glob", odd_user.id: "user-glob"}
    assert result["policy"]["name"] == fx.HOSTILE
    entry = [e for e in result["terminated"] if e["id"] == odd_user.id][0]
    assert entry["user"] == user and "%(x)s" in entry["query"]
    assert not odd.alive() and not odd_user.alive()
    assert plain.alive()


# ---------------------------------------------------------------- EXAMPLES as written
def _examples(module):
    return yaml.safe_load(module.EXAMPLES)


def _module_tasks(tasks):
    """How many tasks (blocks included) call a module of the collection."""
    count = 0
    for task in tasks:
        count += _module_tasks(task.get("block", []))
        count += any(key.startswith("dbhygiene.sessions.") for key in task)
    return count


def test_examples_run_as_written(fleet, pg_held, tmp_path):
    server = "pg3"
    # A bystander: no example may end it (it is neither old nor from outside the allowed networks).
    bystander = pg_held(server, "idle", application="t-%s-bystander" % uuid.uuid4().hex[:8])
    tasks = _examples(postgresql_session_info) + _examples(postgresql_sessions)
    playbook = [
        {
            "name": "EXAMPLES of the PostgreSQL modules",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {
                "pg_host": fleet.server(server)["host"],
                "pg_hygiene_password": fleet.password("hygiene"),
                "pg_ca_cert": fleet.pki["ca_cert"],
            },
            "tasks": tasks,
        }
    ]
    path = os.path.join(str(tmp_path), "examples.yml")
    with open(path, "w") as f:
        yaml.safe_dump(playbook, f, sort_keys=False)
    run = run_playbook(path)
    assert run.rc == 0, run.output
    ran = [r for r in run.results if r["action"].startswith("dbhygiene.sessions.")]
    assert len(ran) == _module_tasks(tasks) >= 4 and all(r["status"] == "ok" for r in ran), [
        (r["task"], r["status"]) for r in ran
    ]
    assert bystander.alive()
