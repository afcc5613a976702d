# -*- coding: utf-8 -*-
"""The MySQL/MariaDB driver against real MariaDB servers of the fleet (from Python)."""

import time

import pymysql
import pytest
from conftest import lift_share_limit, wait_until

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _ending, _runner  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]


def _one(d, held):
    found = [s for s in d.list_sessions() if s["id"] == held.id]
    assert len(found) == 1, found
    return found[0]


def test_lists_every_kind_as_normalized_records(fleet, my_held, my_tag):
    idle = my_held("idle", application=my_tag + "-idle")
    trx = my_held("idle_in_transaction", application=my_tag + "-trx")
    active = my_held("active", application=my_tag + "-active", seconds=30)
    admin_idle = my_held("idle", user="fleet_admin", application=my_tag + "-admin")
    local = my_held("idle", application=my_tag + "-local", local=True)
    assert local.alive()
    time.sleep(1.1)
    with fx.driver(fleet) as d:
        d.preflight(signal=True)
        facts = d.server_facts()
        assert facts["flavour"] == "mariadb" and facts["engine"] == "mysql"
        assert facts["superusers_readable"] and facts["applications_readable"]
        sessions = dict((s["application"], s) for s in fx.mine(d.list_sessions(), my_tag))
        assert d.own_id not in [s["id"] for s in d.list_sessions()]
    assert sessions[my_tag + "-idle"]["state"] == "idle"
    assert sessions[my_tag + "-idle"]["id"] == idle.id
    assert sessions[my_tag + "-idle"]["idle_seconds"] > 1
    assert sessions[my_tag + "-idle"]["query_seconds"] is None
    assert sessions[my_tag + "-idle"]["client_addr"] == "127.0.0.1"
    assert sessions[my_tag + "-idle"]["superuser"] is False
    assert sessions[my_tag + "-idle"]["database"] == "appdb"
    assert sessions[my_tag + "-trx"]["state"] == "idle_in_transaction"
    assert sessions[my_tag + "-trx"]["id"] == trx.id
    assert sessions[my_tag + "-trx"]["transaction_seconds"] is not None
    assert sessions[my_tag + "-active"]["state"] == "active"
    assert sessions[my_tag + "-active"]["id"] == active.id
    assert sessions[my_tag + "-active"]["query"] == "SELECT SLEEP(30)"
    assert sessions[my_tag + "-active"]["query_seconds"] > 1
    assert sessions[my_tag + "-admin"]["superuser"] is True
    assert sessions[my_tag + "-admin"]["id"] == admin_idle.id
    assert sessions[my_tag + "-local"]["client_addr"] is None
    for record in sessions.values():
        assert record["key"].startswith("%s:%s@" % (record["id"], record["user"]))
        assert record["connected_at"] is None and record["connected_seconds"] is None


def test_never_lists_ourselves_nor_system_threads(fleet):
    with fx.driver(fleet) as d:
        sessions = d.list_sessions()
        assert d.own_id not in [s["id"] for s in sessions]
        assert not [s for s in sessions if s["user"] in ("system user", "event_scheduler", "unauthenticated user")]
        assert not [s for s in sessions if s["command"] in ("Daemon", "Binlog Dump", "Binlog Dump GTID")]
        assert not [s for s in sessions if s["application"] == "dbhygiene.sessions" and s["id"] == d.own_id]


def test_terminate_ends_idle_and_idle_in_transaction(fleet, my_held, my_tag):
    idle = my_held("idle", application=my_tag)
    trx = my_held("idle_in_transaction", application=my_tag)
    with fx.driver(fleet) as d:
        victims = fx.mine(d.list_sessions(), my_tag)
        results = d.end_sessions(victims, "terminate")
    assert [outcome for dummy, outcome, dummy2 in results] == ["terminated", "terminated"]
    assert wait_until(lambda: not idle.alive() and not trx.alive())


def test_cancel_stops_the_query_and_keeps_the_connection(fleet, my_held, my_tag):
    active = my_held("active", application=my_tag, seconds=30)
    with fx.driver(fleet) as d:
        results = d.end_sessions(fx.mine(d.list_sessions(), my_tag), "cancel")
    assert [r[1] for r in results] == ["cancelled"]
    assert wait_until(lambda: active.state() == "Sleep")
    assert active.alive()


def test_a_procedure_that_ignores_cancel_is_ended_by_terminate(fleet, my_held, my_tag):
    stubborn = my_held("active_ignores_cancel", application=my_tag, seconds=30)
    with fx.driver(fleet) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        assert [r[1] for r in d.end_sessions(planned, "cancel")] == ["cancelled"]
        time.sleep(1.2)
        assert stubborn.state() == "Query"  # the handler swallowed the interruption
        again = fx.mine(d.list_sessions(), my_tag)
        # same statement (state_since within tolerance) although QUERY_ID moved inside the procedure
        assert _ending.same_statement(planned[0], again[0], d.state_since_tolerance)
        assert [r[1] for r in d.end_sessions(again, "terminate")] == ["terminated"]
    assert wait_until(lambda: not stubborn.alive())


def test_the_race_a_victim_that_woke_up_is_skipped(fleet, my_held, my_tag):
    idle = my_held("idle", application=my_tag)
    time.sleep(0.3)
    with fx.driver(fleet) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        idle.execute("SELECT 1")  # between plan and kill
        results = d.end_sessions(planned, "terminate")
    assert results[0][1] == "state_changed", results
    assert "new statement" in results[0][2]
    assert idle.alive()


def test_the_race_a_transaction_that_moved_on_is_skipped(fleet, my_held, my_tag):
    trx = my_held("idle_in_transaction", application=my_tag)
    with fx.driver(fleet) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        trx.execute("COMMIT")
        results = d.end_sessions(planned, "terminate")
    assert results[0][1] == "state_changed"
    assert trx.alive()


def test_a_gone_thread_and_a_foreign_identity_are_not_killed(fleet, my_held, my_tag):
    leaving = my_held("idle", application=my_tag + "-leaving")
    staying = my_held("idle", application=my_tag + "-staying")
    with fx.driver(fleet) as d:
        planned = dict((s["application"], s) for s in fx.mine(d.list_sessions(), my_tag))
        leaving.close()
        assert wait_until(lambda: not leaving.alive())
        impostor = dict(planned[my_tag + "-staying"], host="127.0.0.1:1")  # a plan for another connection
        results = d.end_sessions([planned[my_tag + "-leaving"], impostor], "terminate")
    assert [r[1] for r in results] == ["gone", "gone"]
    assert staying.alive()


def test_our_own_connection_is_never_killed(fleet):
    with fx.driver(fleet) as d:
        me = {"id": d.own_id, "user": "hygiene", "host": "x", "state": "idle", "command": "Sleep"}
        results = d.end_sessions([me], "terminate")
        assert results[0][1] == "failed"
        assert d.list_sessions() is not None  # still connected


def test_the_race_through_the_runner_is_reported_and_harmless(fleet, my_held, my_tag):
    idle = my_held("idle", application=my_tag)
    time.sleep(1.1)

    class WakeBeforeEnd(object):
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def end_sessions(self, victims, mode):
            idle.execute("SELECT 1")
            return self.inner.end_sessions(victims, mode)

    policy = parse_policy(
        lift_share_limit({"name": "race", "rules": [{"applications": [my_tag], "idle_longer_than": 1}]})
    )
    with fx.driver(fleet) as d:
        result = _runner.apply_policy(WakeBeforeEnd(d), policy, check_mode=False, wait_timeout=2)
    assert result["changed"] is False and result["terminated"] == []
    assert [(s["id"], s["reason"]) for s in result["not_ended"]] == [(idle.id, "state_changed")]
    assert idle.alive()


def test_preflight_names_the_missing_grants(fleet, my_user):
    with fx.driver(fleet, user="nopriv") as d:
        with pytest.raises(SessionError) as caught:
            d.preflight(signal=False)
    message = str(caught.value)
    assert "lacks PROCESS" in message and "GRANT PROCESS ON *.* TO 'nopriv'@'%'" in message
    assert "%s:3306" % fleet.server(fx.SERVER)["host"] in message

    user, password = my_user(grants=["GRANT PROCESS ON *.* TO %s@%s"])
    with fx.driver(fleet, user=user, password=password) as d:
        d.preflight(signal=False)  # can see, not kill
        with pytest.raises(SessionError) as caught:
            d.preflight(signal=True)
    message = str(caught.value)
    assert "GRANT CONNECTION ADMIN ON *.* TO '%s'@'%%'" % user in message
    assert "GRANT SELECT (User, Host, Super_priv) ON mysql.user" in message
    assert "GRANT SELECT ON performance_schema.session_connect_attrs" in message
    assert password not in message


def test_a_login_without_the_read_grants_sees_unknowns(fleet, my_user, my_held, my_tag):
    user, password = my_user(grants=["GRANT PROCESS, CONNECTION ADMIN ON *.* TO %s@%s"])
    my_held("idle", application=my_tag, user="fleet_admin")
    with fx.driver(fleet, user=user, password=password) as d:
        d.preflight(signal=False)
        facts = d.server_facts()
        assert not facts["superusers_readable"] and not facts["applications_readable"]
        admins = [s for s in d.list_sessions() if s["user"] == "fleet_admin"]
        assert admins and all(s["superuser"] is None and s["application"] is None for s in admins)
        with pytest.raises(SessionError, match="mysql.user"):
            d.preflight(signal=True)
        # a policy that needs neither may run
        d.preflight(signal=True, policy=parse_policy({"rules": [{"users": ["x"]}], "protect": {"superusers": False}}))


def test_kill_denied_is_failed_with_the_grant(fleet, my_user, my_held):
    user, password = my_user(grants=["GRANT PROCESS ON *.* TO %s@%s"])
    idle = my_held("idle")
    with fx.driver(fleet, user=user, password=password) as d:
        results = d.end_sessions([_one(d, idle)], "terminate")
    assert results[0][1] == "failed"
    assert "lacks CONNECTION ADMIN" in results[0][2] and "GRANT CONNECTION ADMIN ON *.* TO" in results[0][2]
    assert idle.alive()


def _tls_cipher(d):
    return d._execute(("SHOW SESSION STATUS LIKE %s", ("Ssl_cipher",)))[0][1]


def test_no_tls_unless_asked(fleet):
    with fx.driver(fleet) as d:
        assert _tls_cipher(d) == ""


def test_tls_with_the_fleet_ca_and_hostname_check(fleet):
    with fx.driver(fleet, ca_cert=fleet.pki["ca_cert"], check_hostname=True) as d:
        assert _tls_cipher(d) != ""
        d.preflight(signal=True)


def test_tls_client_certificate_login(fleet):
    client = fleet.pki["clients"]["hygiene_cert"]
    with fx.driver(
        fleet,
        user="hygiene_cert",
        password=fleet.password("hygiene"),
        ca_cert=fleet.pki["ca_cert"],
        client_cert=client["cert"],
        client_key=client["key"],
    ) as d:
        assert d.server_facts()["login_user"] == "hygiene_cert@%"
        assert _tls_cipher(d) != ""
    # the same account without the certificate is refused (REQUIRE X509)
    with pytest.raises(SessionError, match="Access denied"):
        fx.driver(fleet, user="hygiene_cert", password=fleet.password("hygiene")).__enter__()


def test_tls_with_a_wrong_ca_fails_clearly(fleet):
    with pytest.raises(SessionError) as caught:
        with fx.driver(fleet, ca_cert=fleet.pki["wrong_ca_cert"]):
            pass
    message = str(caught.value)
    assert "%s:3306" % fleet.server(fx.SERVER)["host"] in message
    assert "ca_cert" in message and "certificate verify failed" in message


def test_a_failed_login_never_shows_the_password(fleet):
    secret = "t-secret-%s" % time.time()
    with pytest.raises(SessionError) as caught:
        with fx.driver(fleet, password=secret):
            pass
    assert secret not in str(caught.value) and "Access denied" in str(caught.value)


def test_hostile_user_application_and_query_text(fleet, my_user, my_held, my_tag):
    user, password = my_user(name="t'%s;`x" + my_tag[2:6])
    app = my_tag + fx.HOSTILE
    held = my_held("idle", user=user, password=password, application=app)
    runner = my_held("idle", application=my_tag + "-q")
    hostile_sql = "SELECT SLEEP(30), 'it''s \"odd\" ;%s `x` -- ;KILL 1;'"
    runner._run_background(hostile_sql)
    assert wait_until(lambda: runner.state() == "Query")
    bystander = my_held("idle", application=my_tag + "-bystander")
    time.sleep(1.1)
    with fx.driver(fleet) as d:
        found = _one(d, held)
        assert found["user"] == user and found["application"] == app
        assert found["key"] == "%s:%s@%s/%d" % (held.id, user, found["host"], d.server_started)
        assert _one(d, runner)["query"] == hostile_sql
        policy = parse_policy(
            lift_share_limit(
                {
                    "name": fx.HOSTILE,
                    "rules": [
                        {"name": "hostile-user", "users": [user], "applications": ["*" + fx.HOSTILE]},
                        {
                            "name": "hostile-query",
                            "applications": [my_tag + "-q"],
                            "query_matches": r"it''s \"odd\" ;%s `x` -- ;KILL",
                        },
                    ],
                }
            )
        )
        result = _runner.apply_policy(d, policy, check_mode=False, wait_timeout=5)
    assert sorted(s["id"] for s in result["terminated"]) == sorted([held.id, runner.id])
    assert wait_until(lambda: not held.alive() and not runner.alive())
    assert bystander.alive()


def test_the_connection_is_recognisable(fleet):
    with fx.driver(fleet) as d, fx.admin(fleet) as cur:
        cur.execute(
            "SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs "
            "WHERE PROCESSLIST_ID = %s AND ATTR_NAME = 'program_name'",
            (d.own_id,),
        )
        assert cur.fetchone()[0] == "dbhygiene.sessions"


def test_pymysql_is_not_left_open(fleet):
    d = fx.my_driver.open_driver(fx.conn_params(fleet))
    own = d.own_id
    d.close()
    d.close()  # twice is fine
    with fx.admin(fleet) as cur:
        assert wait_until(lambda: not cur.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s", (own,)))


def test_admin_is_reachable(fleet):
    with fx.admin(fleet) as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    assert pymysql
