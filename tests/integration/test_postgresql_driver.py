# -*- coding: utf-8 -*-
"""The PostgreSQL driver against real servers of the fleet, from Python.

Every test opens its own sessions under a unique application name (or login)
and only ever ends those; other tests run against the same servers meanwhile.
The server's real state is checked through the admin login (HeldSession.alive).
"""

import os
import time
import uuid

import psycopg2
import pytest
from conftest import lift_share_limit, wait_until

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy
from dbfleet import pgbin

pytest_plugins = ["_postgresql_fixtures"]

SERVER = "pg1"


def _host(fleet):
    return fleet.server(SERVER)["host"]


def driver(fleet, **kwargs):
    return fx.driver(fleet, SERVER, **kwargs)


def conn_params(fleet, **kwargs):
    return fx.conn_params(fleet, SERVER, **kwargs)


def test_the_fleet_runs_the_major_it_was_asked_for(fleet):
    # make test and make test-postgresql-matrix choose the major with $DBFLEET_PG_MAJOR (the npm
    # package's binaries); without it the fleet runs Debian's.
    if os.environ.get("DBFLEET_PG_BINDIR"):
        pytest.skip("$DBFLEET_PG_BINDIR names the binaries by hand")
    wanted = os.environ.get("DBFLEET_PG_MAJOR") or os.path.basename(os.path.dirname(pgbin.debian_bindir()))
    with driver(fleet) as d:
        facts = d.server_facts()
    assert facts["version_num"] // 10000 == int(wanted), facts["version_full"]
    assert facts["version"].startswith(wanted + "."), facts["version"]


@pytest.fixture
def tag(pg_tag):
    return pg_tag


@pytest.fixture
def held(pg_held):
    return lambda kind, **kwargs: pg_held(SERVER, kind, **kwargs)


@pytest.fixture
def make_role(pg_role):
    return lambda name, *grants: pg_role(SERVER, name, *grants)


@pytest.fixture
def admin(fleet):
    conn = fx.admin_connection(fleet, SERVER)
    try:
        yield conn
    finally:
        conn.close()


def mine(d, tag):
    return {s["id"]: s for s in d.list_sessions() if (s["application"] or "").startswith(tag)}


# ---------------------------------------------------------------- listing
def test_lists_every_kind_as_normalized_records(fleet, held, tag):
    sessions = {
        "idle": held("idle", application=tag + "-idle"),
        "idle_in_transaction": held("idle_in_transaction", application=tag + "-iit"),
        "idle_in_transaction_aborted": held("idle_in_transaction_aborted", application=tag + "-aborted"),
        "active": held("active", application=tag + "-active", seconds=60),
    }
    local = held("idle", application=tag + "-local", local=True)
    time.sleep(0.2)
    with driver(fleet) as d:
        listed = mine(d, tag)
    assert sorted(listed) == sorted([s.id for s in sessions.values()] + [local.id])
    for state, session in sessions.items():
        record = listed[session.id]
        assert record["state"] == state
        assert record["user"] == "app" and record["database"] == "appdb"
        assert record["client_addr"] == "127.0.0.1"
        assert record["key"] == "%d@%s" % (session.id, record["connected_at"])
        assert record["connected_at"].endswith("+00:00") and record["state_since"].endswith("+00:00")
        assert record["superuser"] is False and record["backend_type"] == "client backend"
        assert record["connected_seconds"] >= record["idle_seconds"] >= 0
    assert listed[sessions["active"].id]["query_seconds"] > 0
    assert "pg_sleep" in listed[sessions["active"].id]["query"]
    assert listed[sessions["idle"].id]["query_seconds"] is None
    assert listed[sessions["idle"].id]["transaction_seconds"] is None
    assert listed[sessions["idle_in_transaction"].id]["transaction_seconds"] > 0
    assert listed[local.id]["client_addr"] is None  # unix socket


def test_never_lists_ourselves_nor_non_client_backends(fleet, admin):
    cur = admin.cursor()
    cur.execute("SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'")
    background = {row[0] for row in cur.fetchall()}
    assert background, "the server runs background processes (checkpointer, autovacuum launcher, ...)"
    with driver(fleet) as d:
        listed = d.list_sessions()
        ids = {s["id"] for s in listed}
        assert d.own_id not in ids
        assert not ids & background
        assert all(s["backend_type"] == "client backend" for s in listed)
        assert all(not (s["application"] or "").startswith(d.application_name) for s in listed)
        facts = d.server_facts()
    assert facts["own_pid"] == d.own_id and facts["own_application"] == d.application_name
    assert facts["engine"] == "postgresql" and facts["version_num"] >= 100000


def test_superuser_sessions_are_flagged(fleet, held, tag):
    admin_session = held("idle", user="fleet_admin", application=tag + "-su")
    app_session = held("idle", application=tag + "-app")
    with driver(fleet) as d:
        listed = mine(d, tag)
    assert listed[admin_session.id]["superuser"] is True
    assert listed[app_session.id]["superuser"] is False


# ---------------------------------------------------------------- guarded end
def test_terminate_ends_the_session(fleet, held, tag):
    victim = held("idle_in_transaction", application=tag + "-v")
    bystander = held("idle_in_transaction", application=tag + "-b")
    with driver(fleet) as d:
        record = mine(d, tag)[victim.id]
        [(session, outcome, detail)] = d.end_sessions([record], "terminate")
    assert (session, outcome, detail) == (record, "terminated", None)
    assert wait_until(lambda: not victim.alive())
    assert bystander.alive()


def test_cancel_stops_the_query_and_keeps_the_connection(fleet, held, tag):
    victim = held("active", application=tag + "-v", seconds=60)
    with driver(fleet) as d:
        record = mine(d, tag)[victim.id]
        assert d.end_sessions([record], "cancel")[0][1] == "cancelled"
    assert wait_until(lambda: victim.state() == "idle")
    assert victim.alive()


def test_a_session_that_ignores_cancel_is_ended_by_terminate(fleet, held, tag):
    victim = held("active_ignores_cancel", application=tag + "-v", seconds=60)
    with driver(fleet) as d:
        planned = mine(d, tag)[victim.id]
        assert d.end_sessions([planned], "cancel")[0][1] == "cancelled"
        time.sleep(0.5)
        now = mine(d, tag)[victim.id]
        assert now["state"] == "active" and now["state_since"] == planned["state_since"]
        assert d.end_sessions([now], "terminate")[0][1] == "terminated"
    assert wait_until(lambda: not victim.alive())


def test_a_session_that_woke_up_is_skipped_state_changed(fleet, held, tag):
    victim = held("idle", application=tag + "-v")
    with driver(fleet) as d:
        planned = mine(d, tag)[victim.id]
        victim.execute("SELECT 1")  # the race: it runs a statement between plan and kill
        [(dummy, outcome, detail)] = d.end_sessions([planned], "terminate")
    assert outcome == "state_changed"
    assert "when planned" in detail
    time.sleep(0.2)
    assert victim.alive()


def test_identity_is_pid_and_backend_start(fleet, held, tag):
    victim = held("idle", application=tag + "-v")
    with driver(fleet) as d:
        planned = mine(d, tag)[victim.id]
        older = "2020-01-01T00:00:00+00:00"
        reused = dict(planned, connected_at=older, key="%d@%s" % (victim.id, older))
        [(dummy, outcome, detail)] = d.end_sessions([reused], "terminate")
        assert outcome == "gone"
        assert "now belongs to another session" in detail
        inconsistent = dict(planned, id=victim.id + 1)
        assert d.end_sessions([inconsistent], "terminate")[0][1] == "failed"
        garbage = dict(planned, key="not-a-key")
        assert d.end_sessions([garbage], "terminate")[0][1] == "failed"
    time.sleep(0.2)
    assert victim.alive()


def test_one_batch_reports_each_session(fleet, held, tag):
    ended = held("idle", application=tag + "-ended")
    woke = held("idle", application=tag + "-woke")
    left = held("idle", application=tag + "-left")
    with driver(fleet) as d:
        planned = mine(d, tag)
        woke.execute("SELECT 2")
        left.close()
        assert wait_until(lambda: not left.alive())
        results = d.end_sessions([planned[ended.id], planned[woke.id], planned[left.id]], "terminate")
    assert [(s["id"], outcome) for s, outcome, dummy in results] == [
        (ended.id, "terminated"),
        (woke.id, "state_changed"),
        (left.id, "gone"),
    ]
    assert wait_until(lambda: not ended.alive())
    assert woke.alive()


def test_a_batch_that_errors_is_retried_one_by_one(fleet, held, tag):
    victim = held("idle", application=tag + "-v")
    with driver(fleet) as d:
        record = mine(d, tag)[victim.id]
        # A key the server cannot read as a timestamp makes the whole batch statement fail.
        broken = dict(record, id=victim.id + 100000, key="%d@not-a-time" % (victim.id + 100000))
        results = d.end_sessions([broken, record], "terminate")
    assert [outcome for dummy, outcome, dummy_detail in results] == ["failed", "terminated"]
    assert "not ended: cannot terminate sessions on PostgreSQL at %s:5432" % _host(fleet) in results[0][2]
    assert wait_until(lambda: not victim.alive())


def test_our_own_connection_is_never_signalled(fleet):
    with driver(fleet) as d:
        own = {"id": d.own_id, "key": "%d@2020-01-01T00:00:00+00:00" % d.own_id, "state": "active"}
        [(dummy, outcome, detail)] = d.end_sessions([own], "terminate")
        assert outcome == "failed" and "own connection" in detail
        assert d.server_facts()["own_pid"] == d.own_id  # still connected


def test_a_superuser_session_needs_a_superuser(fleet, held, tag):
    victim = held("idle", user="fleet_admin", application=tag + "-su")
    with driver(fleet) as d:
        record = mine(d, tag)[victim.id]
        [(dummy, outcome, detail)] = d.end_sessions([record], "terminate")
    assert outcome == "failed"
    assert "superuser" in detail and "pid %d" % victim.id in detail
    assert victim.alive()


# ---------------------------------------------------------------- privileges
def test_preflight_names_the_missing_grants(fleet):
    with driver(fleet, user="nopriv") as d:
        with pytest.raises(SessionError) as info:
            d.preflight(signal=True)
        message = str(info.value)
        assert "login nopriv on PostgreSQL at %s:5432" % _host(fleet) in message
        assert 'GRANT pg_read_all_stats TO "nopriv"' in message
        assert 'GRANT pg_signal_backend TO "nopriv"' in message
        with pytest.raises(SessionError, match="pg_read_all_stats") as info:
            d.preflight(signal=False)
        assert "pg_signal_backend" not in str(info.value)
    with driver(fleet) as d:
        d.preflight(signal=True)  # the least-privilege login of the fleet is enough


def test_a_login_that_can_read_but_not_signal(fleet, held, tag, make_role):
    reader = "t_reader_" + uuid.uuid4().hex[:8]
    password = make_role(reader, "pg_read_all_stats")
    victim = held("idle", application=tag + "-v")
    with driver(fleet, user=reader, login_password=password) as d:
        d.preflight(signal=False)
        with pytest.raises(SessionError, match='GRANT pg_signal_backend TO "%s"' % reader):
            d.preflight(signal=True)
        record = mine(d, tag)[victim.id]
        assert record["state"] == "idle"  # visible thanks to pg_read_all_stats
        [(dummy, outcome, detail)] = d.end_sessions([record], "terminate")
    assert outcome == "failed" and "lacks pg_signal_backend" in detail
    assert victim.alive()


# ---------------------------------------------------------------- connection and TLS
def _uses_tls(admin, pid):
    cur = admin.cursor()
    cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = %s", (pid,))
    return cur.fetchone()[0]


def test_tls_verify_full_with_the_fleet_ca(fleet, admin):
    with driver(fleet, ssl_mode="verify-full", ca_cert=fleet.pki["ca_cert"]) as d:
        d.preflight(signal=True)
        assert _uses_tls(admin, d.own_id) is True


def test_tls_client_certificate_login(fleet, admin):
    client = fleet.pki["clients"]["hygiene_cert"]
    with driver(
        fleet,
        user="hygiene_cert",
        login_password=None,
        ssl_mode="verify-full",
        ca_cert=fleet.pki["ca_cert"],
        ssl_cert=client["cert"],
        ssl_key=client["key"],
    ) as d:
        d.preflight(signal=True)
        assert _uses_tls(admin, d.own_id) is True


def test_tls_with_a_wrong_ca_fails_clearly(fleet):
    with pytest.raises(SessionError) as info:
        pg.open_driver(conn_params(fleet, ssl_mode="verify-full", ca_cert=fleet.pki["wrong_ca_cert"]))
    message = str(info.value)
    assert "cannot connect to PostgreSQL at %s:5432 as hygiene" % _host(fleet) in message
    assert "certificate verify failed" in message and "check ca_cert" in message


def test_a_ca_without_ssl_mode_means_verify_full(fleet, admin):
    with driver(fleet, ssl_mode=None, ca_cert=fleet.pki["ca_cert"]) as d:
        assert _uses_tls(admin, d.own_id) is True
        cur = admin.cursor()
        cur.execute("SELECT client_addr IS NOT NULL FROM pg_stat_activity WHERE pid = %s", (d.own_id,))
        assert cur.fetchone() == (True,)


def test_a_wrong_ca_without_ssl_mode_fails_instead_of_going_without_verified_tls(fleet):
    """Before: ca_cert alone meant prefer, which connects whatever the certificate (or in plain text)."""
    with pytest.raises(SessionError) as info:
        pg.open_driver(conn_params(fleet, ssl_mode=None, ca_cert=fleet.pki["wrong_ca_cert"]))
    message = str(info.value)
    assert "cannot connect to PostgreSQL at %s:5432 as hygiene" % _host(fleet) in message
    assert "certificate verify failed" in message and "check ca_cert" in message


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_a_mode_that_may_go_plain_text_with_a_ca_is_refused_before_connecting(fleet, mode):
    # A port nothing listens on: the refusal must come before any connection attempt.
    with pytest.raises(SessionError) as info:
        pg.open_driver(conn_params(fleet, ssl_mode=mode, ca_cert=fleet.pki["ca_cert"], login_port=1))
    assert "ssl_mode %s together with ca_cert" % mode in str(info.value)
    assert "cannot connect" not in str(info.value)


def test_no_tls_option_keeps_the_default(fleet, admin):
    with driver(fleet, ssl_mode=None) as d:  # libpq's prefer: TLS, as the fleet offers it
        assert _uses_tls(admin, d.own_id) is True


# ---------------------------------------------------------------- bounds and hostile options
def test_our_statements_are_bounded_on_the_server_too(fleet):
    with driver(fleet, query_timeout=1) as d:
        assert d._query(("SHOW statement_timeout", {}), "read statement_timeout")[1] == [("1s",)]
        with pytest.raises(SessionError, match="canceling statement due to statement timeout"):
            d._query(("SELECT pg_sleep(10)", {}), "sleep")
        assert d.server_facts()["own_pid"] == d.own_id  # the server cancelled it: the connection lives on


@pytest.mark.parametrize(
    "field, value",
    [("login_host", "127.0.1.1\x00evil"), ("login_user", "hygiene\n"), ("login_db", "postgres\x00")],
)
def test_an_impossible_character_fails_naming_the_field(fleet, field, value):
    with pytest.raises(SessionError) as info:
        pg.open_driver(conn_params(fleet, **{field: value}))
    assert str(info.value).startswith("%s must not contain the control character" % field)


def test_a_failed_login_never_shows_the_password(fleet):
    secret = "Wr0ng-%s'\";pw" % uuid.uuid4().hex[:6]
    with pytest.raises(SessionError) as info:
        pg.open_driver(conn_params(fleet, login_password=secret))
    message = str(info.value)
    assert "password authentication failed" in message and "check login_user and login_password" in message
    assert secret not in message


# ---------------------------------------------------------------- hostile strings
def test_hostile_user_application_and_query_text(fleet, held, tag, make_role):
    user = "t_" + uuid.uuid4().hex[:6] + fx.HOSTILE
    password = make_role(user)
    application = tag + fx.HOSTILE
    victim = held("idle", user=user, password=password, application=application, database="postgres")
    victim.execute("SELECT %s::text AS x" % psycopg2.extensions.QuotedString(fx.HOSTILE).getquoted().decode())
    with driver(fleet) as d:
        record = mine(d, tag)[victim.id]
        assert record["user"] == user
        assert record["application"] == application
        assert '"odd"; %s %(x)s -- ;DROP TABLE t;' in record["query"]
        [(dummy, outcome, dummy_detail)] = d.end_sessions([record], "terminate")
    assert outcome == "terminated"
    assert wait_until(lambda: not victim.alive())


# ---------------------------------------------------------------- with the runner
class _RacingDriver(pg.PostgreSQLDriver):
    """Lets a planned victim run a statement just before the guarded kill."""

    def __init__(self, inner, before_end):
        self.__dict__.update(inner.__dict__)
        self._before_end = before_end

    def end_sessions(self, victims, mode):
        self._before_end()
        return super().end_sessions(victims, mode)


def test_the_race_through_the_runner_is_reported_and_harmless(fleet, held, tag):
    sleeper = held("idle", application=tag + "-sleeper")
    waker = held("idle", application=tag + "-waker")
    time.sleep(1.2)
    policy = parse_policy(
        lift_share_limit({"name": "race", "rules": [{"applications": [tag + "-*"], "idle_longer_than": 1}]})
    )
    inner = pg.open_driver(conn_params(fleet))
    racing = _RacingDriver(inner, lambda: waker.execute("SELECT 3"))
    try:
        result = apply_policy(racing, policy, check_mode=False, wait_timeout=5)
    finally:
        racing.close()
    assert [e["id"] for e in result["terminated"]] == [sleeper.id]
    [skipped] = result["not_ended"]
    assert (skipped["id"], skipped["reason"]) == (waker.id, "state_changed")
    assert result["changed"] is True
    assert not sleeper.alive()
    assert waker.alive()


def test_a_rule_naming_our_own_connection_never_ends_it(fleet, held, tag):
    victim = held("idle", application=tag + "-v")
    with driver(fleet) as d:
        policy = parse_policy(
            lift_share_limit(
                {
                    "name": "self",
                    "rules": [
                        {"name": "ourselves", "applications": [d.application_name]},
                        {"name": "mine", "applications": [tag + "-*"]},
                    ],
                }
            )
        )
        result = apply_policy(d, policy, check_mode=False, wait_timeout=5)
        everyone = result["terminated"] + result["cancelled"] + result["not_ended"]
        assert [e["id"] for e in everyone] == [victim.id]
        assert result["summary"]["by_rule"]["ourselves"] == {"victims": 0, "protected": 0}
        assert d.server_facts()["own_pid"] == d.own_id  # still connected
    assert not victim.alive()
