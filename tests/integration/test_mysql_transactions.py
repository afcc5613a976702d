# -*- coding: utf-8 -*-
"""The exact transaction state of Sleep threads on MariaDB, on a real server.

The driver reads whether a Sleep thread is in a transaction in performance_schema's
transaction events (my_rows.transaction_state), not in INFORMATION_SCHEMA.INNODB_TRX, a cache
that a monitoring agent reading it every 50 ms keeps from ever being refreshed (and that never
shows a bare BEGIN). These tests run such an agent (dbfleet.transactions.InnodbTrxPoller)
beside every open-transaction shape: none may be classified idle or ended by an idle rule, an
idle session outside a transaction still is, and the guard refuses a victim that opened a
transaction after planning, also one whose QUERY_ID did not move (the check inside the guard
block, right before the KILL). Where the events are off, or the login may not read them, a
Sleep thread counts as idle_in_transaction (fail safe) and says why. The race measured over
many trials is tests/reliability/test_transaction_state.py.
"""

import time
import uuid

import pytest
from conftest import wait_until
from dbfleet import mariadb
from dbfleet import transactions as trx

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

TRANSACTION_GRANTS = (
    "GRANT SELECT ON performance_schema.events_transactions_current TO %s@%s",
    "GRANT SELECT ON performance_schema.setup_consumers TO %s@%s",
    "GRANT SELECT ON performance_schema.setup_instruments TO %s@%s",
)


@pytest.fixture(scope="module")
def table(fleet):
    name = "tx_" + uuid.uuid4().hex[:8]
    with fx.admin(fleet) as cur:
        trx.make_table(cur, name)
    yield name
    with fx.admin(fleet) as cur:
        cur.execute("SET SESSION lock_wait_timeout = 10")
        cur.execute(f"DROP TABLE IF EXISTS appdb.{name}")


@pytest.fixture
def sessions(my_held, my_tag, table):
    """open(name) -> a held session of login app (application '<my_tag>-<name>') with a row of its
    own in the test's table (dbfleet.transactions.prepare); closed at teardown."""
    return lambda name: trx.prepare(my_held("idle", application=f"{my_tag}-{name}", database="appdb"), table)


@pytest.fixture
def poller(fleet):
    with trx.InnodbTrxPoller(fleet, fx.SERVER) as running:
        yield running
    assert running.reads > 0


@pytest.fixture
def events_off(fleet):
    """switch() turns the transaction events off (the fail-safe path); on again at teardown."""
    server = fleet.server(fx.SERVER)
    was = []

    def switch():
        was.append(mariadb.set_transaction_events(server, False))

    yield switch
    if was:
        mariadb.set_transaction_events(server, was[0])


def _idle_rule(my_tag, state="idle"):
    # Limits lifted: on a quiet server the test's own sessions are most of its client sessions.
    return parse_policy(
        {
            "name": "tx",
            "rules": [{"states": [state], "applications": [my_tag + "-*"]}],
            "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},
        }
    )


def _by_id(d):
    return dict((s["id"], s) for s in d.list_sessions())


def _aged(opened):
    """Wait until the sessions opened last have been idle for the driver's idle proof."""
    time.sleep(my_guard.IDLE_PROOF_SECONDS + 0.1)
    return opened


# ------------------------------------------------------------ the listing, with a poller
def test_every_open_transaction_is_idle_in_transaction_and_an_idle_rule_ends_only_the_idle(
    fleet, sessions, poller, my_tag
):
    opened = dict((shape, sessions(shape)) for shape in list(trx.OPEN_SHAPES) + list(trx.CLOSED_SHAPES))
    for shape, session in opened.items():
        trx.take(session, shape)
    _aged(opened)
    with fx.driver(fleet) as d:
        assert d.server_facts()["transaction_state_exact"] is True
        records = _by_id(d)
        states = dict((shape, records[session.id]["state"]) for shape, session in opened.items())
        assert states == dict(
            [(shape, "idle_in_transaction") for shape in trx.OPEN_SHAPES]
            + [(shape, "idle") for shape in trx.CLOSED_SHAPES]
        )
        assert all(records[s.id]["state_detail"] is None for s in opened.values())
        # the age of a transaction counts from its start, also where InnoDB has none yet
        assert records[opened["bare_begin"].id]["transaction_seconds"] >= my_guard.IDLE_PROOF_SECONDS
        assert records[opened["never"].id]["transaction_seconds"] is None
        result = apply_policy(d, _idle_rule(my_tag), check_mode=False, wait_timeout=5)
    assert not result.get("failed"), result.get("msg")
    assert sorted(e["id"] for e in result["terminated"]) == sorted(opened[shape].id for shape in trx.CLOSED_SHAPES)
    assert all(not opened[shape].alive() for shape in trx.CLOSED_SHAPES)
    assert all(opened[shape].alive() for shape in trx.OPEN_SHAPES)
    assert trx.in_transaction(opened["uncommitted_update"]) and trx.in_transaction(opened["bare_begin"])


def test_an_idle_in_transaction_rule_ends_every_shape_with_the_poller(fleet, sessions, poller, my_tag):
    opened = dict((shape, sessions(shape)) for shape in trx.OPEN_SHAPES)
    for shape, session in opened.items():
        trx.take(session, shape)
    idle = _aged([sessions("never")])[0]
    with fx.driver(fleet) as d:
        result = apply_policy(d, _idle_rule(my_tag, "idle_in_transaction"), check_mode=False, wait_timeout=5)
    assert sorted(e["id"] for e in result["terminated"]) == sorted(s.id for s in opened.values())
    assert idle.alive()


# ------------------------------------------------------------ the guard, with a poller
def test_the_guard_refuses_a_victim_that_opened_a_transaction_after_planning(fleet, sessions, poller, my_tag):
    late = dict((shape, sessions(shape)) for shape in trx.LATE_STARTS)
    untouched = sessions("untouched")
    _aged(late)
    with fx.driver(fleet) as d:
        records = _by_id(d)
        victims = [records[s.id] for s in list(late.values()) + [untouched]]
        assert all(v["state"] == "idle" for v in victims)
        for shape, session in late.items():
            trx.take(session, shape)
        outcomes = dict((v["id"], (outcome, detail)) for v, outcome, detail in d.end_sessions(victims, "terminate"))
    assert outcomes[untouched.id][0] == "terminated"
    for session in late.values():
        assert outcomes[session.id][0] == "state_changed", outcomes[session.id]
        assert session.alive()
    assert wait_until(lambda: not untouched.alive())


@pytest.mark.parametrize("path", ["loop", "statement_events", "own_step"])
def test_the_guard_block_itself_proves_no_transaction_before_the_kill(fleet, sessions, poller, my_tag, path):
    # The race the check is for: a listing that saw the thread Sleep outside a transaction with
    # the QUERY_ID it has now, while it is in a transaction (its read of the transaction events
    # and of PROCESSLIST a moment apart). The plan's record is made so: its QUERY_ID is the one
    # the thread has after BEGIN. Only the read inside the guard block can refuse it.
    was_on = mariadb.set_statement_events(fleet.server(fx.SERVER), path == "statement_events")
    try:
        victim, control = sessions("victim"), sessions("control")  # each runs a statement: an event
        _aged([victim, control])
        with fx.driver(fleet) as d:
            records = _by_id(d)
            planned = [dict(records[victim.id]), dict(records[control.id])]
            assert all(p["state"] == "idle" for p in planned)
            trx.take(victim, "bare_begin")
            with fx.admin(fleet) as cur:
                cur.execute("SELECT QUERY_ID FROM information_schema.PROCESSLIST WHERE ID = %s", (victim.id,))
                planned[0]["query_id"] = cur.fetchone()[0]
            if path == "own_step":
                rows = d._execute(d.flavour.guard_block(planned, "terminate", loop=False))
                codes = [code for code, dummy in my_guard.parse_guard_outcomes(rows[0][0], 2)]
                assert codes == [my_guard.GUARD_IN_TRANSACTION, my_guard.GUARD_ENDED]
            else:
                outcomes = d.end_sessions(planned, "terminate")
                assert [(o[1], o[2]) for o in outcomes] == [
                    ("state_changed", my_guard.IN_TRANSACTION_DETAIL),
                    ("terminated", None),
                ]
                expected = "statement_events" if path == "statement_events" else "looped"
                assert d.guard_counts[expected] == 2 and d.guard_counts["transaction_checked"] == 2
    finally:
        mariadb.set_statement_events(fleet.server(fx.SERVER), was_on)
    assert victim.alive() and trx.in_transaction(victim)
    assert wait_until(lambda: not control.alive())


# ------------------------------------------------------------ fail safe: events off, no grant
def test_with_the_transaction_events_off_a_sleep_thread_counts_as_idle_in_transaction(
    fleet, sessions, events_off, my_tag
):
    idle, begun = sessions("idle"), sessions("begun")
    events_off()
    trx.take(begun, "bare_begin")
    _aged([idle, begun])
    with fx.driver(fleet) as d:
        facts = d.server_facts()
        assert (
            facts["transaction_state_exact"] is False
            and "transaction events are off" in facts["transaction_state_detail"]
        )
        records = _by_id(d)
        for session in (idle, begun):
            assert records[session.id]["state"] == "idle_in_transaction"
            assert "unproven" in records[session.id]["state_detail"]
            assert "transaction events are off" in records[session.id]["state_detail"]
        result = apply_policy(d, _idle_rule(my_tag), check_mode=False, wait_timeout=5)
        assert result["terminated"] == [] and result["matched"] == 0
        would = apply_policy(d, _idle_rule(my_tag, "idle_in_transaction"), check_mode=True)
        assert sorted(e["id"] for e in would["terminated"]) == sorted([idle.id, begun.id])
    assert idle.alive() and begun.alive()


def test_the_guard_refuses_a_victim_planned_idle_once_the_events_are_switched_off(fleet, sessions, events_off):
    victim = sessions("victim")
    _aged([victim])
    with fx.driver(fleet) as d:
        planned = _by_id(d)[victim.id]
        assert planned["state"] == "idle"
        events_off()
        ((dummy, outcome, detail),) = d.end_sessions([planned], "terminate")
    assert (outcome, detail) == ("state_changed", my_guard.TRX_UNPROVEN_DETAIL)
    assert victim.alive()


def test_a_login_without_the_transaction_grants_fails_the_preflight_of_a_states_policy(
    fleet, sessions, my_user, my_tag
):
    grants = tuple(g for g in fx.LEAST_PRIVILEGE_GRANTS if g not in TRANSACTION_GRANTS)
    user, password = my_user(grants=grants)
    idle = _aged([sessions("idle")])[0]
    with fx.driver(fleet, user=user, password=password) as d:
        facts = d.server_facts()
        assert facts["transaction_state_exact"] is False and "cannot read" in facts["transaction_state_detail"]
        record = _by_id(d)[idle.id]
        assert record["state"] == "idle_in_transaction" and "cannot read" in record["state_detail"]
        d.preflight(signal=False)  # listing needs no more than PROCESS
        d.preflight(signal=True, policy=parse_policy({"rules": [{"applications": [my_tag + "-*"]}]}))
        for policy in (_idle_rule(my_tag), parse_policy({"rules": [{"transaction_longer_than": "1h"}]})):
            with pytest.raises(SessionError) as caught:
                d.preflight(signal=True, policy=policy)
            message = str(caught.value)
            for grant in TRANSACTION_GRANTS:
                assert grant.replace("%s@%s", f"'{user}'@'%'") in message
            assert password not in message
    # the documented least privilege has them: exact
    user, password = my_user(grants=fx.LEAST_PRIVILEGE_GRANTS)
    with fx.driver(fleet, user=user, password=password) as d:
        d.preflight(signal=True, policy=_idle_rule(my_tag))
        assert _by_id(d)[idle.id]["state"] == "idle" and d.server_facts()["transaction_state_exact"] is True
