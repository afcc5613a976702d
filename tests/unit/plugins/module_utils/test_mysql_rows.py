# -*- coding: utf-8 -*-
"""A listing row as the session record, and whether a re-read thread moved on (``_mysql/rows.py``),
without a server.
"""

import datetime

import pytest
from _mysql_samples import (
    EXACT,
    NOW,
    _row,
    _waiter,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import locks as my_locks
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import rows as my_rows
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statements as my_statements


# ------------------------------------------------------------ rows
@pytest.mark.parametrize(
    "host, addr",
    [
        ("127.0.0.1:51234", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("::1:51234", "::1"),
        ("[fe80::1]:3306", "fe80::1"),
        ("localhost", None),
        ("", None),
        (None, None),
        ("app-7.example.com:4000", "app-7.example.com"),
    ],
)
def test_client_address(host, addr):
    assert my_rows.client_address(host) == addr


@pytest.mark.parametrize(
    "command, trx, event, state",
    [
        ("Sleep", None, None, "idle"),  # never had a transaction
        ("Sleep", None, "COMMITTED", "idle"),
        ("Sleep", None, "ROLLED BACK", "idle"),
        ("Sleep", None, "ACTIVE", "idle_in_transaction"),  # a bare BEGIN: no InnoDB transaction yet
        ("Sleep", NOW, "ACTIVE", "idle_in_transaction"),
        ("Sleep", NOW, "COMMITTED", "idle"),  # INNODB_TRX's cache still shows a transaction that ended
        ("Query", None, None, "active"),
        ("Query", NOW, "ACTIVE", "active"),
        ("Execute", None, None, "active"),
        ("Killed", None, None, "other"),
        ("Field List", None, None, "other"),
    ],
)
def test_state_mapping(command, trx, event, state):
    record = my_rows.normalize_row(_row(command=command, trx=trx, event=event), unproven=EXACT)
    assert record["state"] == state and record["state_detail"] is None


@pytest.mark.parametrize(
    "row, unproven, why",
    [
        (_row(events_on=0), EXACT, "transaction events are off"),  # switched off when the listing ran
        (_row(events_on=None), EXACT, "transaction events are off"),
        (_row(tid=None), EXACT, "not instrumented"),  # setup_actors / threads.INSTRUMENTED
        (_row(event="COMMITTED"), "performance_schema is off", "performance_schema is off"),
        (_row(), my_statements.TRX_EVENTS_OFF, "transaction events are off"),
    ],
)
def test_a_sleep_thread_without_proof_counts_as_idle_in_transaction(row, unproven, why):
    record = my_rows.normalize_row(row, unproven=unproven)
    assert record["state"] == "idle_in_transaction"
    assert why in record["state_detail"] and "unproven" in record["state_detail"]
    assert record["transaction_seconds"] is None  # no InnoDB transaction listed: its age is not known


def test_the_age_of_a_transaction():
    exact = my_rows.normalize_row(_row(trx=NOW, event="ACTIVE", seconds=9.1234), unproven=EXACT)
    assert exact["transaction_seconds"] == 9.123 and exact["trx_thread_id"] == 42  # from BEGIN (the event)
    assert my_rows.normalize_row(_row(trx=NOW, event="COMMITTED"), unproven=EXACT)["transaction_seconds"] is None
    # Unproven: INNODB_TRX's lower bound where it lists the thread, as before.
    assert my_rows.normalize_row(_row(trx=NOW, events_on=0), unproven=EXACT)["transaction_seconds"] == 3.5
    assert my_rows.normalize_row(_row(command="Query", trx=NOW, events_on=0), unproven=EXACT)["state_detail"] is None


def test_normalize_row():
    record = my_rows.normalize_row(_row(command="Query", info=b"SELECT 'x' " + b"y" * 2000, trx=NOW), 1714550000, "web")
    assert record["id"] == 7 and record["key"] == "7:app@127.0.0.1:5000/1714550000"
    assert record["application"] == "web"
    assert record["client_addr"] == "127.0.0.1"
    assert record["idle_seconds"] == 2.5 and record["query_seconds"] == 2.5
    assert record["state_since"] == "2024-05-01T07:59:57.500000+00:00"
    assert record["transaction_seconds"] == 3.5
    assert record["transaction_started"] == "2024-05-01T08:00:00+00:00"
    assert len(record["query"]) == 1024
    assert record["connected_at"] is None and record["connected_seconds"] is None
    assert record["superuser"] is False
    assert my_rows.normalize_row(_row())["key"] == "7:app@127.0.0.1:5000"  # no server start known (MySQL without P_S)
    idle = my_rows.normalize_row(_row(superuser=None))
    assert idle["query_seconds"] is None and idle["transaction_seconds"] is None
    assert idle["superuser"] is None and idle["application"] is None
    assert my_rows.normalize_row(_row(superuser=1))["superuser"] is True


# ------------------------------------------------------------ guard
def _rec(**changes):
    record = my_rows.normalize_row(_row(), 1714550000, unproven=EXACT)
    record.update(changes)
    return record


def _later(record, seconds):
    moment = datetime.datetime.fromisoformat(record["state_since"]) + datetime.timedelta(seconds=seconds)
    return moment.isoformat()


@pytest.mark.parametrize(
    "current, outcome",
    [
        (dict, None),
        (lambda p: dict(p, idle_seconds=p["idle_seconds"] + 3), None),
        (lambda p: dict(p, state_since=_later(p, 0.2)), None),
        (lambda p: None, "gone"),
        (lambda p: dict(p, host="127.0.0.1:6000"), "gone"),
        (lambda p: dict(p, user="app2"), "gone"),
        (lambda p: dict(p, key=p["key"].replace("/1714550000", "/1714559999")), "gone"),  # server restarted
        (lambda p: dict(p, command="Query", state="active"), "state_changed"),
        (
            lambda p: dict(p, state="idle_in_transaction", transaction_started="2024-05-01T08:00:00+00:00"),
            "state_changed",
        ),
        (lambda p: dict(p, query_id=11), "state_changed"),
        (lambda p: dict(p, query_id=None, state_since=_later(p, 2)), "state_changed"),
        (lambda p: dict(p, state_since=None), "state_changed"),
    ],
)
def test_moved_on(current, outcome):
    planned = _rec()
    found = my_rows.moved_on(planned, current(planned), 0.5)
    assert (found[0] if found else None) == outcome


def test_moved_on_active_ignores_query_id_changes_inside_a_procedure():
    planned = _rec(command="Query", state="active", query_id=100)
    assert my_rows.moved_on(planned, dict(planned, query_id=140), 0.5) is None
    assert my_rows.moved_on(planned, dict(planned, state_since=_later(planned, 5)), 0.5)[0] == "state_changed"


def test_session_keys_carry_the_server_start():
    assert my_rows.session_key(4, "app", "localhost", 1714550000) == "4:app@localhost/1714550000"
    assert my_rows.key_server_started("4:app@localhost/1714550000") == 1714550000
    assert my_rows.key_server_started("4:app@localhost") is None
    assert my_rows.key_server_started("4:a/b@localhost") is None
    assert my_rows.key_server_started(None) is None


def test_mysql_guard_requires_a_waiter_to_still_wait():
    planned = _waiter("row")
    assert my_rows.moved_on(planned, dict(planned), 0.5) is None
    gone_wait = dict(planned, lock_wait_seconds=None, blocked_by=[], lock_kind=None)
    assert my_rows.moved_on(planned, gone_wait, 0.5) == ("state_changed", my_locks.NOT_WAITING_DETAIL)
    # a victim of another rule is not asked
    other = dict(planned)
    del other[GUARD_STILL_WAITING]
    assert my_rows.moved_on(other, gone_wait, 0.5) is None
