# -*- coding: utf-8 -*-
"""The statement-event binding of idle victims (``_mysql/statement_events.py``), without a server."""

import pytest
from _mysql_samples import (
    _bindable,
    _placeholders_match,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statement_events as my_events


def _thread_list(victims, **moved):
    """PROCESSLIST rows (ID, USER, HOST, COMMAND, QUERY_ID) of `victims` as planned; moved:
    {position: {field: value}}."""
    rows = []
    for position, victim in enumerate(victims):
        row = {"user": victim["user"], "host": victim["host"], "command": "Sleep", "query_id": victim["query_id"]}
        row.update(moved.get("at%d" % position, {}))
        rows.append((victim["id"], row["user"], row["host"], row["command"], row["query_id"]))
    return rows


def test_a_victim_is_bound_to_its_latest_event_only_when_the_thread_list_still_shows_it_as_planned():
    victims = [_bindable(n) for n in range(7)]
    threads = [(v["id"], 9000 + n) for n, v in enumerate(victims) if n != 1]  # 1: not instrumented
    events = [(9000 + n, 50 + n, 0) for n in range(7) if n != 2]  # 2: no statement event
    events.append((9003, 77, 1))  # 3: a statement runs (its latest event has not ended)
    events = [e for e in events if not (e[0] == 9003 and e[2] == 0)]
    thread_list = _thread_list(
        victims,
        at4={"query_id": 2004},  # 4: a command since the listing
        at5={"user": "APP"},  # 5: another user (byte for byte)
    )
    bound = my_events.bind_statement_events(victims, threads, events, thread_list)
    assert bound == {0: (9000, 50), 6: (9006, 56)}
    # a thread the second thread list no longer shows is not bound
    assert my_events.bind_statement_events(victims[:1], threads, events, []) == {}
    # MariaDB gives USER as bytes to a binary comparison
    as_bytes = [(row[0], row[1].encode(), row[2], row[3], row[4]) for row in thread_list]
    assert my_events.bind_statement_events(victims, threads, events, as_bytes) == bound


@pytest.mark.parametrize(
    "row, complete",
    [((3, 0, 1), True), ((2, 0, 1), False), ((3, 1, 1), False), ((3, 0, 0), False), ((None, None, None), False)],
)
def test_statement_events_are_complete_only_with_every_consumer_and_instrument_on(row, complete):
    sql, params = my_events.statement_events_query()
    assert _placeholders_match(sql, params)
    assert params == ("global_instrumentation", "thread_instrumentation", "events_statements_current", "statement/%")
    assert my_events.statement_events_complete(row) is complete
