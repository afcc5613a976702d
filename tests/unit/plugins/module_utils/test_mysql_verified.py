# -*- coding: utf-8 -*-
"""The MariaDB guard's verified blocks (``_mysql/verified.py``), without a server."""

import pytest
from _mysql_samples import (
    _placeholders_match,
    _victim,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import flavours as my_flavours
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statements as my_statements
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import verified as my_verified


# ------------------------------------------------------------ verified blocks
def test_block_verifiable_takes_looped_victims_whose_idle_time_is_known():
    assert my_verified.block_verifiable(
        _victim(command="Sleep", state="idle", query_id=3, idle_seconds=600), "terminate"
    )
    assert not my_verified.block_verifiable(
        _victim(command="Sleep", state="idle", query_id=3, idle_seconds=None), "terminate"
    )
    assert not my_verified.block_verifiable(
        _victim(command="Sleep", state="idle", query_id=3, idle_seconds=600), "cancel"
    )
    assert not my_verified.block_verifiable(
        _victim(command="Query", state="active", query_id=3, idle_seconds=600), "terminate"
    )


@pytest.mark.parametrize(
    "idle, threads, size",
    [
        # bound 1e-4, margin 0.8: a victim idle t allows 80 us x t; the read costs 10 us x threads,
        # each KILL 100 us more, at its place in the block
        ([1.0] * 10, 100, 0),  # 80 us allowed, the read alone 1 ms
        ([1000.0] * 2000, 100, 790),  # 80 ms: 1 ms read + 790 KILLs
        ([1000.0] * 2000, 4000, 400),  # 80 ms: 40 ms read + 400 KILLs
        ([10000.0] * 5000, 1, 1000),  # never more than VERIFIED_BLOCK
        ([200.0, 200.0, 2000.0, 2000.0], 100, 4),  # the longer idle later in the block: more room
        ([200.0] * 200 + [20.0], 100, 150),  # 16 ms allow 1 ms + 150 KILLs
        ([], 100, 0),
    ],
)
def test_verified_block_size_keeps_each_predicted_window_within_the_bound(idle, threads, size):
    assert my_verified.verified_block_size(idle, threads, 1e-4, 10e-6, 100e-6) == size


def test_verified_block_reads_the_thread_list_once_and_kills_in_one_loop():
    victims = [
        _victim(id=7, query_id=10, state="idle", idle_seconds=600, trx_thread_id=70),
        _victim(id=8, query_id=11, state="idle", host="127.0.0.1:5001", idle_seconds=900, trx_thread_id=None),
    ]
    sql, params = my_verified.verified_block(victims, 1e-4)
    assert _placeholders_match(sql, params)
    assert sql.startswith("BEGIN NOT ATOMIC") and sql.endswith("END")
    # one read of the thread list for the block, leading the join; one KILL, in the loop
    assert sql.count("information_schema.PROCESSLIST") == 1
    assert "FROM information_schema.PROCESSLIST AS p STRAIGHT_JOIN" in sql
    assert "BINARY p.USER = BINARY x.usr AND p.HOST = x.host" in sql
    assert sql.count("KILL CONNECTION v.id;") == 1 and sql.count("KILL") == 1
    # the bound, checked in the server right before the KILL; the instant before the read
    assert "SET t0 = SYSDATE(6); FOR v IN" in sql
    assert "IF v.ms > 0 AND z <= 0.0001 THEN KILL CONNECTION v.id;" in sql
    assert "v.c <> 'Sleep' OR v.q <> v.qid" in sql
    # planned idle: the transaction events read with the block, complete, else no KILL
    assert "performance_schema.events_transactions_current" in sql and "SET tc = ((SELECT COUNT(*)" in sql
    assert params[:14] == (0, 7, "app", "127.0.0.1:5000", 10, 70, 1, 1, 8, "app", "127.0.0.1:5001", 11, None, 1)
    assert params[14:] == my_statements.TRANSACTION_EVENTS_ON_PARAMS


def test_verified_block_without_a_victim_planned_idle_reads_no_transaction_events():
    sql, params = my_verified.verified_block(
        [_victim(id=7, query_id=10, idle_seconds=600, state="idle_in_transaction")]
    )
    assert _placeholders_match(sql, params)
    assert "events_transactions_current" not in sql and "z <= 0.0001" in sql
    assert params == (0, 7, "app", "127.0.0.1:5000", 10, 0, 0)


def test_on_rds_a_verified_block_ends_its_victims_with_the_service_procedure():
    """RDS's master user has no KILL right over other users' threads: a block kills with
    mysql.rds_kill, as the guard's own loop does (the flavour's loop_kill)."""
    flavour = my_flavours.MariaDB((10, 11, 9), True)
    assert flavour.loop_kill() == "KILL CONNECTION v.id;"
    flavour.rds_kill = True
    sql, params = my_verified.verified_block([_victim(id=7, query_id=10, idle_seconds=600)], 1e-4, flavour.loop_kill())
    assert _placeholders_match(sql, params)
    assert "IF v.ms > 0 AND z <= 0.0001 THEN CALL mysql.rds_kill(v.id);" in sql and "KILL" not in sql


@pytest.mark.parametrize("bound", [0, 1, -1e-4, True, "1e-4", float("nan")])
def test_verified_block_refuses_a_bound_that_is_no_ratio(bound):
    with pytest.raises(ValueError, match="bound"):
        my_verified.verified_block([_victim(id=7, query_id=10, idle_seconds=600)], bound)


def test_verified_block_figures():
    assert my_verified.verified_block_figures("2500:14000:3") == (0.0025, 0.014, 3)
    assert my_verified.verified_block_figures(":90:0") == (None, 0.00009, 0)
    assert my_verified.verified_block_figures(None) == (None, None, 0)
    # the outcomes of a block, in the victims' order
    assert my_guard.parse_guard_outcomes("b:0:1.2e-05|g|r|m:Query:12|", 4) == [
        ("b", ["0", "1.2e-05"]),
        ("g", []),
        ("r", []),
        ("m", ["Query", "12"]),
    ]
