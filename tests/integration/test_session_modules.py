# -*- coding: utf-8 -*-
"""The sessions and session_info modules of both engines, run by Ansible against real servers:
the behaviour that is the same on PostgreSQL and MariaDB, written once (`engine`:
_engine_fixtures.py). What only one engine does stays in test_postgresql_modules.py and
test_mysql_modules.py.

Each test holds sessions of its own (application names under the engine's unique tag) and
scopes every rule to them; after each run the server's real state is checked through the admin
login (HeldSession.alive / .state).
"""

import json
import time
import uuid

import pytest
from conftest import ids, run_module, wait_until

pytest_plugins = ["_engine_fixtures"]

UNREACHABLE = {"login_port": 1, "connect_timeout": 2}


# ---------------------------------------------------------------- the four steps
def test_check_real_and_idempotence(engine):
    tag = engine.tag
    ghosts = [engine.held("idle", application="%s-ghost-%d" % (tag, n)) for n in range(2)]
    keeper = engine.held("idle", application=tag + "-keeper")
    time.sleep(1.2)
    policy = {
        "name": "four-steps",
        "rules": [
            {"name": "ghost-idle", "states": ["idle"], "idle_longer_than": "1s", "applications": [tag + "-ghost-*"]}
        ],
    }

    result, run = engine.sessions_run(policy, check=True, diff=True)
    assert not result.get("failed"), run.output
    assert result["changed"] is True and result["check_mode"] is True
    assert ids(result["terminated"]) == sorted(g.id for g in ghosts)
    assert {e["rule"] for e in result["terminated"]} == {"ghost-idle"}
    assert all(g.alive() for g in ghosts) and keeper.alive()  # check mode ended nothing
    before, after = result["diff"]["before"], result["diff"]["after"]
    for ghost in ghosts:
        # a line of the listing starts with the id (a bare id, one digit on a new fleet, is in "6 client sessions")
        assert "\n%d app@" % ghost.id in before and "[ghost-idle -> terminate]" in before
        assert "\n%d app@" % ghost.id not in after
    assert "%d app@" % keeper.id not in before  # the diff lists what the policy matched
    assert "2 matched" in before

    result, run = engine.sessions_run(policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is True and result["check_mode"] is False
    assert ids(result["terminated"]) == sorted(g.id for g in ghosts)
    assert result["not_ended"] == [] and result["cancelled"] == []
    assert not any(g.alive() for g in ghosts)  # gone already: the module waited for them
    assert keeper.alive()

    result, run = engine.sessions_run(policy, check=True)
    assert not result.get("failed") and result["changed"] is False and result["terminated"] == [], run.output

    result, run = engine.sessions_run(policy)
    assert not result.get("failed") and result["changed"] is False, run.output
    assert result["terminated"] == [] and result["not_ended"] == []
    assert keeper.alive()


def test_a_task_that_ended_sessions_shows_as_changed(engine):
    # A session the policy matched but did not end (here a protected one) must not turn the task
    # into "skipping": the list is `not_ended`, and no result key is named `skipped` (issue 13).
    ghost = engine.held("idle", application=engine.tag + "-ghost")
    kept = engine.held("idle", user="backup_agent", application=engine.tag + "-kept")
    time.sleep(1.2)
    policy = {
        "name": "shown-as-changed",
        "rules": [
            {"name": "ghost-idle", "states": ["idle"], "idle_longer_than": 1, "applications": [engine.tag + "-*"]}
        ],
        "protect": {"users": ["backup_*"]},
    }
    for check in (True, False):
        result, run = engine.sessions_run(policy, check=check)
        assert not result.get("failed"), run.output
        assert ids(result["terminated"]) == [ghost.id]
        assert [(e["id"], e["reason"]) for e in result["not_ended"]] == [(kept.id, "protected")]
        assert "skipped" not in result and "skipped" not in result["summary"] and "not_ended" in result["summary"]
        assert run.task_status("the module") == "changed", run.output
        assert run.stats["localhost"]["changed"] == 1 and run.stats["localhost"]["skipped"] == 0, run.stats
        assert "does not support Ansible version" not in run.output
        assert "converted to bool" not in run.output
    assert not ghost.alive() and kept.alive()


# ---------------------------------------------------------------- cancel
def test_cancel_then_terminate(engine):
    stubborn = engine.held("active_ignores_cancel", application=engine.tag + "-stubborn", seconds=120)
    polite = engine.held("active", application=engine.tag + "-polite", seconds=120)
    idle = engine.held("idle", application=engine.tag + "-idle")
    time.sleep(1.2)
    policy = {
        "name": "escalate",
        "action": "cancel_then_terminate",
        "grace": "1s",
        "rules": [
            {"name": "runaway", "states": ["active"], "running_longer_than": 1, "applications": [engine.tag + "-*"]},
            {"name": "ghost", "states": ["idle"], "idle_longer_than": 1, "applications": [engine.tag + "-*"]},
        ],
    }
    result, run = engine.sessions_run(policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is True
    assert ids(result["terminated"]) == sorted([stubborn.id, idle.id])
    assert ids(result["cancelled"]) == [polite.id]
    assert not stubborn.alive() and not idle.alive()
    assert polite.alive() and wait_until(lambda: polite.state() == engine.cancelled_state)


def test_cancel_keeps_the_connection_and_skips_idle_victims(engine):
    runner = engine.held("active", application=engine.tag + "-runner", seconds=120)
    idle = engine.held("idle", application=engine.tag + "-idle")
    time.sleep(1.2)
    rules = [{"idle_longer_than": 1, "applications": [engine.tag + "-*"]}]
    policy = {"name": "cancel", "action": "cancel", "rules": rules}
    result, run = engine.sessions_run(policy)
    assert not result.get("failed"), run.output
    assert result["changed"] is True
    assert ids(result["cancelled"]) == [runner.id] and result["terminated"] == []
    assert [(e["id"], e["reason"]) for e in result["not_ended"]] == [(idle.id, "nothing_to_cancel")]
    assert wait_until(lambda: runner.state() == engine.cancelled_state)
    assert runner.alive() and idle.alive()


# ---------------------------------------------------------------- limits
@pytest.mark.parametrize(
    "limits, needles",
    [
        ({"max_terminations": 2}, ["would end 3 of", "above limits.max_terminations 2"]),
        ({"max_fraction": 0.001}, ["would end 3 of", "above limits.max_fraction 0.001"]),
    ],
    ids=["max_terminations", "max_fraction"],
)
@pytest.mark.parametrize("check", [False, True], ids=["real", "check"])
def test_limits_fail_closed(engine, limits, needles, check):
    ghosts = [engine.held("idle", application=engine.tag + "-ghost") for dummy in range(3)]
    time.sleep(1.2)
    rules = [{"idle_longer_than": 1, "applications": [engine.tag + "-*"]}]
    policy = {"name": "limited", "rules": rules, "limits": limits}
    result, run = engine.sessions_run(policy, check=check)
    assert result.get("failed") is True and result["changed"] is False
    for needle in needles:
        assert needle in result["msg"]
    assert "nothing was ended" in result["msg"]
    assert result["terminated"] == [] and ids(result["would_end"]) == sorted(g.id for g in ghosts)
    assert all(g.alive() for g in ghosts)


# ---------------------------------------------------------------- bad input, before connecting
@pytest.mark.parametrize(
    "rules, needles",
    [
        ([{"idle_longer_than": "5 minutes"}], ["policy.rules[0].idle_longer_than", "'5 minutes'"]),
        ([{"idle_longer_than": "30m", "bogus": 1}], ["bogus"]),
        ([{"query_matches": "(unclosed"}], ["policy.rules[0].query_matches", "'(unclosed'"]),
        ([{"client_addresses": ["10.0.0.0/33"]}], ["policy.rules[0].client_addresses[0]", "'10.0.0.0/33'"]),
        ([{"applications": ["app["]}], ["policy.rules[0].applications[0]", "'app['"]),
        ([{"states": ["sleeping"]}], ["sleeping"]),
        ([], ["policy.rules"]),
    ],
    ids=["duration", "unknown-key", "regex", "cidr", "glob", "state", "no-rules"],
)
def test_bad_input_fails_before_connecting(engine, rules, needles):
    result, run = engine.sessions_run({"rules": rules}, **UNREACHABLE)
    assert result.get("failed") is True
    for needle in needles:
        assert needle in result["msg"], result["msg"]
    assert "cannot connect" not in result["msg"]


def test_the_unreachable_port_is_unreachable(engine):
    # The control of the test above: a valid policy does try to connect there, and fails.
    result, run = engine.sessions_run({"rules": [{"idle_longer_than": "30m"}]}, **UNREACHABLE)
    assert result.get("failed") is True
    assert "cannot connect to %s at %s:1" % (engine.label, engine.host) in result["msg"], result["msg"]


# ---------------------------------------------------------------- TLS
def test_tls_with_a_wrong_ca_fails_clearly(engine, fleet):
    result, run = engine.info_run(**engine.verified_tls(fleet.pki["wrong_ca_cert"]))
    assert result.get("failed") is True
    assert "cannot connect to %s at %s:%s" % (engine.label, engine.host, engine.port) in result["msg"]
    assert "certificate verify failed" in result["msg"] and "ca_cert" in result["msg"]


# ---------------------------------------------------------------- secrets
def test_passwords_never_show_at_vvv(engine, fleet):
    password = fleet.password("hygiene")
    victim = engine.held("idle", application=engine.tag + "-v")
    time.sleep(1.2)
    policy = {"rules": [{"applications": [engine.tag + "-*"], "idle_longer_than": 1}]}
    for check in (True, False):
        result, run = engine.sessions_run(policy, check=check, diff=True, verbosity=3)
        assert not result.get("failed"), run.output
        assert ids(result["terminated"]) == [victim.id]
        assert password not in run.output and password not in json.dumps(result)
    assert not victim.alive()

    if engine.password_env:  # through the environment instead of the option
        args = engine.login()
        del args["login_password"]
        result, run = run_module(engine.info_module, args, verbosity=3, env={engine.password_env: password})
        assert not result.get("failed"), run.output
        assert password not in run.output and password not in json.dumps(result)

    wrong = "Wr0ng-" + uuid.uuid4().hex
    result, run = engine.info_run(verbosity=3, login_password=wrong)
    assert result.get("failed") is True and engine.wrong_password in result["msg"]
    assert wrong not in run.output and wrong not in json.dumps(result)
