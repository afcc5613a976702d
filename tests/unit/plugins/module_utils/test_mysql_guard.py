# -*- coding: utf-8 -*-
"""The MariaDB guard block and its pieces (``_mysql/guard.py``), without a server."""

import pytest
from _mysql_samples import (
    EXACT,
    MARIADB,
    MARIADB_104,
    MYSQL_8,
    MYSQL_8_NO_PS,
    MYSQL_8_OLD,
    TRX_CONSUMERS,
    _bindable,
    _placeholders_match,
    _row,
    _victim,
    _waiter,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import rows as my_rows


def test_mariadb_guard_block_checks_and_kills_each_victim_in_one_statement():
    victims = [_victim(id=7, query_id=10), _victim(id=8, query_id=11, host="127.0.0.1:5001")]
    sql, params = MARIADB.guard_block(victims, "terminate", loop=False)
    assert _placeholders_match(sql, params)
    assert sql.startswith("BEGIN NOT ATOMIC") and sql.endswith("SELECT r; END")
    assert "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION GET DIAGNOSTICS CONDITION 1 e = MYSQL_ERRNO" in sql
    # per victim: one re-read of that very thread, then its KILL, in this order
    # (user names compared byte for byte: MariaDB's are case-sensitive, its collation is not)
    assert sql.count("FROM information_schema.PROCESSLIST WHERE ID = %s AND BINARY USER = BINARY %s AND HOST = %s") == 2
    assert sql.count("KILL CONNECTION %s;") == 2
    first_read, first_kill = sql.index("PROCESSLIST WHERE ID"), sql.index("KILL CONNECTION")
    second_read = sql.index("PROCESSLIST WHERE ID", first_read + 1)
    assert first_read < first_kill < second_read
    # idle victims: same COMMAND and QUERY_ID (no statement since planning), values as parameters
    assert params[:6] == ("Sleep", 10, 7, "app", "127.0.0.1:5000", 7)
    assert params[6:] == ("Sleep", 11, 8, "app", "127.0.0.1:5001", 8)
    assert "127.0.0.1" not in sql and "app" not in sql.replace("GET DIAGNOSTICS", "")


@pytest.mark.parametrize(
    "planned, unproven",
    [
        ({"state": "idle", "idle_seconds": 0.04}, True),
        ({"state": "idle", "idle_seconds": None}, True),
        ({"state": "idle", "idle_seconds": 0.0}, True),  # MySQL TIME 0: anything below a second
        ({"state": "idle", "idle_seconds": 0.15}, False),
        ({"state": "idle", "idle_seconds": 30.0}, False),
        ({"state": "idle_in_transaction", "idle_seconds": 0.01}, False),
        ({"state": "active", "idle_seconds": 0.01}, False),
    ],
)
def test_an_idle_victim_is_ended_only_when_innodb_could_show_its_transaction(planned, unproven):
    detail = my_guard.idle_unproven(planned)
    assert (detail is not None) is unproven
    if unproven:
        assert "100 ms" in detail and "not ended" in detail


def test_mariadb_guard_block_cancels_by_query_id():
    active = _victim(command="Query", state="active", query_id=99)
    sql, params = MARIADB.guard_block([active], "cancel")
    assert "KILL QUERY ID q;" in sql and "KILL CONNECTION" not in sql
    assert _placeholders_match(sql, params)
    # an active victim: same statement id, or (a procedure moves QUERY_ID) a start not later than planned
    assert "QUERY_ID = %s OR TIMESTAMPADD(MICROSECOND, -ROUND(TIME_MS * 1000), SYSDATE(6))" in sql
    assert params[:3] == ("Query", 99, "2024-05-01 07:59:57.550000")  # state_since + the 50 ms guard tolerance


def test_mariadb_guard_block_refuses_nonsense():
    with pytest.raises(ValueError):
        MARIADB.guard_block([_victim()], "drop")
    with pytest.raises(ValueError):
        MARIADB.guard_block([], "terminate")
    with pytest.raises(ValueError):
        MARIADB.guard_block([_victim(id="7; KILL 1")], "terminate")
    # no state_since to compare and no statement id: never killed
    sql, params = MARIADB.guard_block([_victim(state="active", query_id=None, state_since=None)], "terminate")
    assert "MAX(FALSE)" in sql


# ------------------------------------------------------------ the loop over idle victims
@pytest.mark.parametrize(
    "changes, mode, looped",
    [
        ({}, "terminate", True),
        ({"state": "idle_in_transaction"}, "terminate", True),
        ({}, "cancel", False),  # a cancel needs the statement id it just re-read
        ({"command": "Query", "state": "active"}, "terminate", False),
        ({"waiting_check": True}, "terminate", False),
        ({"query_id": None}, "terminate", False),
    ],
)
def test_only_idle_victims_to_terminate_go_through_the_loop(changes, mode, looped):
    changes = dict(changes)
    if changes.pop("waiting_check", False):
        changes[GUARD_STILL_WAITING] = True
    assert my_guard.looped_reread(_victim(**changes), mode) is looped


def test_idle_victims_go_through_one_loop_each_reread_before_its_kill_then_the_others():
    idle = [_victim(id=100 + n, query_id=1000 + n) for n in range(10)]
    active = _victim(id=9, command="Query", state="active", query_id=12)
    victims = [active] + idle
    assert [v["id"] for v in MARIADB.guard_order(victims, "terminate")] == [v["id"] for v in idle] + [9]
    assert [v["id"] for v in MARIADB.guard_order(victims, "terminate", loop=False)] == [9] + [v["id"] for v in idle]
    sql, params = MARIADB.guard_block(victims, "terminate")
    assert _placeholders_match(sql, params)
    # one loop, whatever the number of victims; its rows in the order given
    assert sql.count("FOR v IN (SELECT * FROM (") == 1 and "ORDER BY x.k) DO" in sql
    assert sql.count("UNION ALL VALUES") == 1
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    # per victim: a read of that very thread (user byte for byte), then its KILL only if
    # it is still Sleep with the planned QUERY_ID
    read = loop.index(
        "FROM information_schema.PROCESSLIST WHERE ID = v.id AND BINARY USER = BINARY v.usr AND HOST = v.host;"
    )
    kill = loop.index("ELSEIF c = 'Sleep' AND q = v.qid THEN KILL CONNECTION v.id;")
    assert read < kill
    assert "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|');" in loop
    assert loop.count("information_schema.PROCESSLIST") == 1
    # a cursor that could not open: the victims it did not reach are reported, never lost
    assert "IF m < 10 THEN SET r = CONCAT(r, REPEAT(CONCAT('x:', e, '|'), 10 - m)); END IF;" in sql
    rows = [params[7 * n : 7 * n + 7] for n in range(len(idle))]
    # (their state unproven, idle_in_transaction: no transaction check, tx 0)
    assert rows[0] == (0, 100, "app", "127.0.0.1:5000", 1000, 0, 0)
    assert rows[-1] == (9, 109, "app", "127.0.0.1:5000", 1009, 0, 0)
    assert "performance_schema" not in sql
    # the active victim after the loop, with its own step (same statement, or started by then)
    assert params[7 * len(idle) :][:2] == ("Query", 12)
    assert sql.index("END FOR;") < sql.index("FROM information_schema.PROCESSLIST WHERE ID = %s")
    assert "127.0.0.1" not in sql


def test_a_single_idle_victim_is_a_loop_without_values():
    sql, params = MARIADB.guard_block([_victim(id=7, query_id=10)], "terminate")
    assert "FOR v IN" in sql and "UNION ALL" not in sql
    assert params == (0, 7, "app", "127.0.0.1:5000", 10, 0, 0)


def test_bound_idle_victims_go_first_through_the_loop_on_statement_events():
    idle = [_bindable(n) for n in range(4)]
    active = _victim(id=9, command="Query", state="active", query_id=12, key="k9")
    bound = {"k1": (9001, 51), "k3": (9003, 53)}
    victims = [active] + idle
    order = [v["id"] for v in MARIADB.guard_order(victims, "terminate", bound=bound)]
    assert order == [101, 103, 100, 102, 9]
    sql, params = MARIADB.guard_block(victims, "terminate", bound=bound)
    assert _placeholders_match(sql, params)
    assert sql.count("FOR v IN (SELECT * FROM (") == 2
    events_loop = sql[sql.index("SET m = 0, e = 0, p = ") : sql.index("END FOR;")]
    # the statement instruments once, before the loop; per victim the consumers, then its thread's events,
    # then its KILL only if the latest event is the bound one and none runs
    instruments = events_loop.index("FROM performance_schema.setup_instruments WHERE NAME LIKE %s AND ENABLED <> 'YES'")
    loop_start = events_loop.index("FOR v IN")
    read = events_loop.index("FROM performance_schema.events_statements_current WHERE THREAD_ID = v.tid;")
    consumers = events_loop.index(
        "FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s) AND ENABLED = 'YES'"
    )
    refused = events_loop.index("ELSEIF IFNULL(ok, 0) <> 3 OR IFNULL(p, 1) <> 0 THEN SET r = CONCAT(r, 'p|');")
    kill = events_loop.index("ELSEIF q = v.eid AND w = 0 THEN KILL CONNECTION v.id;")
    assert instruments < loop_start < consumers < read < refused < kill
    # PROCESSLIST only when the thread has no row (it left, or a statement rewrites its row now):
    # then gone, or moved; never a KILL
    fallback = "ELSEIF n = 0 THEN SELECT COUNT(*) INTO n FROM information_schema.PROCESSLIST WHERE ID = v.id;"
    assert events_loop.count("information_schema") == 1 and read < events_loop.index(fallback) < kill
    assert "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); ELSE SET r = CONCAT(r, 'n::1|'); END IF;" in events_loop
    assert params[0] == "statement/%"
    assert params[1:11] == (0, 101, 9001, 51, 0, 1, 103, 9003, 53, 0)
    assert params[11:14] == ("global_instrumentation", "thread_instrumentation", "events_statements_current")
    # then the PROCESSLIST loop of the unbound idle ones, then the active one's own step
    assert params[14:28] == (0, 100, "app", "127.0.0.1:5000", 1000, 0, 0, 1, 102, "app", "127.0.0.1:5002", 1002, 0, 0)
    assert params[28:30] == ("Query", 12)
    # nothing bound: the block is the PROCESSLIST one
    assert MARIADB.guard_block(victims, "terminate", bound={}) == MARIADB.guard_block(victims, "terminate")
    assert "performance_schema" not in MARIADB.guard_block(victims, "terminate")[0]


# ------------------------------------------------------------ the transaction check of victims planned idle
def _proven_idle(**changes):
    """A victim the listing proved outside a transaction (performance_schema's transaction events)."""
    victim = my_rows.normalize_row(_row(), 1714550000, unproven=EXACT)
    assert victim["state"] == "idle" and victim["trx_thread_id"] == 42
    victim.update(changes)
    return victim


def _check_order(text, read):
    """Positions of: the thread's read, its transaction read, the consumers' check, the KILL. The
    transaction read comes first, so that nothing lengthens the time from the thread's read to
    its KILL."""
    trx = text.index("FROM performance_schema.events_transactions_current WHERE THREAD_ID = ")
    consumers = text.index("FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s)", trx)
    kill = text.index("IF a = 0 THEN KILL ")
    return text.index(read), trx, consumers, kill


@pytest.mark.parametrize(
    "victim, needed",
    [
        (_proven_idle(), True),
        (_proven_idle(state="idle_in_transaction"), False),  # ended in its transaction either way
        (_proven_idle(command="Query", state="active"), False),
    ],
)
def test_a_victim_planned_idle_needs_the_transaction_check(victim, needed):
    assert my_guard.needs_transaction_check(victim, "terminate") is needed
    assert my_guard.needs_transaction_check(victim, "cancel") is False  # nothing to cancel in a Sleep thread


def test_the_loop_proves_a_victim_planned_idle_outside_a_transaction_right_before_its_kill():
    idle = [_proven_idle(id=100 + n, query_id=1000 + n, trx_thread_id=900 + n) for n in range(3)]
    unproven = _victim(id=200, query_id=2000)  # idle_in_transaction: no check
    sql, params = MARIADB.guard_block(idle + [unproven], "terminate")
    assert _placeholders_match(sql, params)
    # the instrument once per block, before the loop
    assert params[0] == "transaction"
    assert sql.index("FROM performance_schema.setup_instruments WHERE NAME = %s") < sql.index("FOR v IN")
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    read, trx, consumers, kill = _check_order(loop, "FROM information_schema.PROCESSLIST WHERE ID = v.id")
    assert trx < consumers < read < kill
    assert "SET a = 0; IF v.tx = 1 THEN" in loop  # only where the row says so
    assert "IF tc <> 3 OR IFNULL(tp, 0) <> 1 OR v.tid IS NULL THEN SET a = -1; END IF;" in loop
    assert "ELSEIF a > 0 THEN SET r = CONCAT(r, 'i|'); ELSE SET r = CONCAT(r, 't|'); END IF;" in loop
    rows = [params[1 + 7 * n : 8 + 7 * n] for n in range(4)]
    assert rows[0] == (0, 100, "app", "127.0.0.1:5000", 1000, 900, 1)
    assert rows[3] == (3, 200, "app", "127.0.0.1:5000", 2000, 0, 0)
    assert params[29:32] == TRX_CONSUMERS


def test_a_victim_planned_idle_without_its_thread_id_is_never_killed_unproven():
    sql, params = MARIADB.guard_block([_proven_idle(trx_thread_id=None)], "terminate")
    assert params[1:8] == (0, 7, "app", "127.0.0.1:5000", 10, None, 1)  # v.tid IS NULL: a = -1, 't'


def test_the_statement_events_loop_proves_it_too():
    victim = _proven_idle(key="k1")
    sql, params = MARIADB.guard_block([victim], "terminate", bound={"k1": (9001, 51)})
    assert _placeholders_match(sql, params)
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    read, trx, consumers, kill = _check_order(loop, "FROM performance_schema.events_statements_current")
    assert trx < consumers < read < kill
    assert "WHERE THREAD_ID = v.tid;" in loop[trx:]  # the bound THREAD_ID of the statement events
    assert params[:7] == ("transaction", "statement/%", 0, 7, 9001, 51, 1)
    assert params[-3:] == TRX_CONSUMERS


def test_own_steps_prove_it_too():
    victims = [_proven_idle(id=7, trx_thread_id=77), _proven_idle(id=8, trx_thread_id=None, host="127.0.0.1:5001")]
    sql, params = MARIADB.guard_block(victims, "terminate", loop=False)
    assert _placeholders_match(sql, params)
    read, trx, consumers, kill = _check_order(sql, "FROM information_schema.PROCESSLIST WHERE ID = %s")
    assert trx < consumers < read < kill < sql.index("PROCESSLIST WHERE ID = %s", kill)
    assert params[:1] == ("transaction",)
    assert params[1:12] == (77,) + TRX_CONSUMERS + (77, "Sleep", 10, 7, "app", "127.0.0.1:5000", 7)
    assert params[12:23] == (None,) + TRX_CONSUMERS + (None, "Sleep", 10, 8, "app", "127.0.0.1:5001", 8)
    # cancels need no check
    assert "events_transactions_current" not in MARIADB.guard_block(victims, "cancel")[0]


@pytest.mark.parametrize(
    "text, parsed",
    [("i|", [("i", [])]), ("t|", [("t", [])]), ("k:0|i|", [("k", ["0"]), ("i", [])])],
)
def test_the_transaction_outcomes_parse(text, parsed):
    assert my_guard.parse_guard_outcomes(text, len(parsed)) == parsed


def test_only_mariadb_guards_server_side():
    assert MARIADB.server_side_guard and MARIADB_104.server_side_guard
    assert not any(f.server_side_guard for f in (MYSQL_8, MYSQL_8_OLD, MYSQL_8_NO_PS))
    assert not hasattr(MYSQL_8, "guard_block")


@pytest.mark.parametrize(
    "text, count, parsed",
    [
        (
            "k:0|g|m:Query:12|k:1094|x:1142|",
            5,
            [("k", ["0"]), ("g", []), ("m", ["Query", "12"]), ("k", ["1094"]), ("x", ["1142"])],
        ),
        ("k:0|", 1, [("k", ["0"])]),
    ],
)
def test_parse_guard_outcomes(text, count, parsed):
    assert my_guard.parse_guard_outcomes(text, count) == parsed


def test_parse_guard_outcomes_refuses_a_wrong_count():
    with pytest.raises(ValueError):
        my_guard.parse_guard_outcomes("k:0|", 2)
    with pytest.raises(ValueError):
        my_guard.parse_guard_outcomes(None, 1)


@pytest.mark.parametrize("threads, size", [(0, 500), (1, 500), (100, 500), (1000, 100), (5000, 20), (10**7, 1)])
def test_guard_blocks_shrink_with_the_thread_list(threads, size):
    assert my_guard.guard_batch_size(threads) == size


@pytest.mark.parametrize(
    "kind, check",
    [
        ("row", "FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'"),
        ("metadata", "PROCESSLIST WHERE ID = %s AND (STATE LIKE 'Waiting for %%lock' OR STATE = 'User lock')"),
        ("user_lock", "PROCESSLIST WHERE ID = %s AND (STATE LIKE 'Waiting for %%lock' OR STATE = 'User lock')"),
    ],
)
def test_mariadb_guard_cancels_a_waiter_only_while_it_still_waits(kind, check):
    plain = _victim(id=8, command="Query", state="active", query_id=11)
    sql, params = MARIADB.guard_block([_waiter(kind, id=7, query_id=10), plain], "cancel")
    assert _placeholders_match(sql, params)
    # the waiter: checked first, then re-read, then cancelled only if both hold
    assert sql.count(check) == 1 and sql.index(check) < sql.index("PROCESSLIST WHERE ID = %s AND BINARY USER")
    assert params[0] == 7
    assert "ELSEIF ok = 1 THEN IF w > 0 THEN KILL QUERY ID q;" in sql
    assert "ELSE SET r = CONCAT(r, 'w|'); END IF;" in sql
    # a victim of any other rule needs no wait: w is set, not read
    assert sql.count("SET w = 1;") == 1 and sql.count("INTO w") == 1
    assert my_guard.parse_guard_outcomes("w|k:0|", 2) == [("w", []), ("k", ["0"])]
