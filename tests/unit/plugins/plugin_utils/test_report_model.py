# -*- coding: utf-8 -*-
"""The fleet report's model (_report_model.py): thresholds, per-host figures, failure reasons,
the report, and the audit report's lock chains."""

import json

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _report_kinds, _report_model, _trail


def _session(session_id, **fields):
    base = {
        "id": session_id,
        "key": "%d@t0" % session_id,
        "user": "app",
        "database": "appdb",
        "application": "web",
        "client_addr": "10.0.0.5",
        "state": "idle",
        "idle_seconds": 100.0,
        "query_seconds": None,
        "transaction_seconds": None,
        "query": "SELECT 1",
        "superuser": False,
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"max_session": 3}, "dbhygiene_audit_thresholds.max_session"),
        ({"max_connection_use": 80}, "dbhygiene_audit_thresholds.max_connection_use"),
        ({"max_oldest_transaction": "5 min"}, "dbhygiene_audit_thresholds.max_oldest_transaction"),
        ({"max_sessions": -1}, "dbhygiene_audit_thresholds.max_sessions"),
        ([1], "dbhygiene_audit_thresholds"),
    ],
)
def test_parse_thresholds_rejects(raw, field):
    with pytest.raises(PolicyError) as error:
        _report_model.parse_thresholds(raw)
    assert error.value.field == field


def test_audit_summary_counts_and_breaches():
    sessions = [
        _session(1),
        _session(2, state="idle_in_transaction", idle_seconds=400.0, transaction_seconds=500.0, user="etl"),
        _session(3, state="active", query_seconds=5.0, application=None),
    ]
    plan = {
        "policy": "p",
        "victims": [{"session": sessions[1], "rule": "stuck", "action": "terminate"}],
        "not_ended": [{"session": sessions[0], "rule": "stuck", "reason": "protected", "detail": "protect.users"}],
        "limit_error": None,
    }
    thresholds = _report_model.parse_thresholds(
        {"max_oldest_transaction": "5m", "max_connection_use": 0.5, "max_would_end": 0}
    )
    summary, breaches = _report_model.audit_summary(sessions, {"max_connections": 10}, plan, thresholds)
    assert summary["by_state"] == {"active": 1, "idle": 1, "idle_in_transaction": 1}
    assert summary["by_user"] == {"app": 2, "etl": 1}
    assert summary["by_application"] == {"(none)": 1, "web": 2}
    assert summary["oldest_transaction"]["id"] == 2 and summary["oldest_transaction"]["seconds"] == 500.0
    assert summary["connection_use"] == 0.4  # 3 sessions + our own of 10
    assert [entry["id"] for entry in summary["would_end"]] == [2]
    assert summary["protected"] == 1
    assert len(breaches) == 2
    assert breaches[0].startswith("max_oldest_transaction: 500.0s")
    assert breaches[1].startswith("max_would_end: 1")


def test_build_report_names_failed_and_missing_hosts():
    ok = {"changed": True, "dbhygiene": {"engine": "mysql", "seen": 4, "terminated": [{"id": 1, "key": "k"}]}}
    failed = {"failed": True, "msg": "cannot connect to 10.0.0.9", "dbhygiene": {"engine": "postgresql"}}
    unreachable = {"unreachable": True, "msg": "ssh: timeout"}
    report = _report_kinds.build_report(
        "enforce",
        ["a", "b", "c", "d"],
        ["a"],
        {"a": ok, "b": failed, "c": unreachable, "d": None},
        False,
        {"policy": "p"},
    )
    assert report["totals"]["ok"] == 1 and report["totals"]["failed"] == 3
    assert report["totals"]["ended"] == 1 and report["totals"]["sessions_seen"] == 4
    assert report["failed_hosts"]["b"] == "cannot connect to 10.0.0.9"
    assert report["hosts"]["c"]["status"] == "unreachable"
    assert "before the task ran" in report["failed_hosts"]["d"]
    markdown = _report_kinds.render_markdown(report)
    assert (
        "## Hosts that failed" in markdown
        and "**b** (unreachable: the database server could not be reached): cannot connect" in markdown
    )


# ---------------------------------------------------------------- not_ended, failures, trail on failure
def test_no_result_key_is_named_skipped():
    result = {
        "policy": {"name": "p"},
        "summary": {"seen": 3},
        "terminated": [],
        "cancelled": [],
        "not_ended": [dict(_session(4), rule="r", action="terminate", reason="gone", detail="")],
    }
    summary = _report_model.enforce_summary(result)
    assert summary["not_ended"][0]["reason"] == "gone" and summary["not_ended_by_reason"] == {"gone": 1}
    report = _report_kinds.build_report("enforce", ["a"], ["a"], {"a": {"dbhygiene": summary}}, False, {})
    assert report["totals"]["not_ended"] == 1

    def keys(value):
        if isinstance(value, dict):
            return set(value) | set().union(*(keys(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(keys(v) for v in value)) if value else set()
        return set()

    assert not [key for key in keys(report) | keys(summary) if "skipped" in key]
    assert "skipped" not in _report_kinds.render_markdown(report)


def test_a_failed_result_that_ended_sessions_still_gets_its_trail_lines():
    """The runner failed after signals went out: what was ended is recorded all the same."""
    result = {
        "failed": True,
        "msg": "terminated 2 sessions on db1, then: cannot list sessions on db1: server closed the connection",
        "policy": {"name": "sweep"},
        "terminated": [dict(_session(1), rule="ghost", action="terminate"), dict(_session(2), rule="ghost")],
        "cancelled": [],
        "not_ended": [],
    }
    lines = _trail.trail_records("db1", "postgresql", result, False, {"job_id": None})
    assert [(line["id"], line["outcome"]) for line in lines] == [(1, "terminated"), (2, "terminated")]
    summary = _report_model.enforce_summary(result)
    report = _report_kinds.build_report(
        "enforce", ["db1"], ["db1"], {"db1": dict(result, dbhygiene=summary)}, False, {"audit_log": "/x/trail"}
    )
    entry = report["hosts"]["db1"]
    assert entry["status"] == "failed" and len(entry["terminated"]) == 2
    assert report["totals"]["terminated"] == 2 and report["totals"]["failed"] == 1
    assert "cannot list sessions" in report["failed_hosts"]["db1"]
    markdown = _report_kinds.render_markdown(report)
    failed_line = [line for line in markdown.splitlines() if line.startswith("- **db1**")][0]
    assert "cannot list sessions" in failed_line and "2 sessions were ended before the failure" in failed_line
    # The ended sessions are in the session table too.
    assert markdown.count("| db1 | 1 |") == 1 and markdown.count("| db1 | 2 |") == 1


@pytest.mark.parametrize(
    "result, code",
    [
        (None, "no_result"),
        ({"unreachable": True, "msg": "ssh: connect to host db1 port 22: Connection timed out"}, "unreachable"),
        (
            {"failed": True, "msg": "cannot connect to PostgreSQL at 10.0.0.9:5432 as hygiene: connection refused"},
            "unreachable",
        ),
        (
            {
                "failed": True,
                "msg": "cannot connect to PostgreSQL at db1:5432 as hygiene: timeout expired; check login_host",
            },
            "unreachable",
        ),
        (
            {
                "failed": True,
                "msg": 'cannot connect to PostgreSQL at db1 as x: FATAL: password authentication failed for user "x"',
            },
            "login",
        ),
        (
            {
                "failed": True,
                "msg": "cannot connect to MySQL/MariaDB at db2:3306 as x: (1045, \"Access denied for user 'x'@'h'\")",
            },
            "login",
        ),
        (
            {"failed": True, "msg": "hygiene on db1 cannot signal: GRANT pg_signal_backend TO hygiene"},
            "privilege",
        ),
        (
            {
                "failed": True,
                "msg": "policy 'p' would end 2 of 3 client sessions (66.7%), above limits.max_terminations 1",
            },
            "limit",
        ),
        ({"failed": True, "msg": "db1 is busy: another sweep holds the sweep lock"}, "busy"),
        ({"failed": True, "msg": "db1: the host deadline (host_timeout 300 s) ran out while waiting"}, "timeout"),
        ({"failed": True, "msg": "policy 'p' uses waiting_longer_than which mysql cannot evaluate"}, "policy"),
        ({"failed": True, "msg": "something odd"}, "error"),
        ({"failed": True, "msg": "another sweep is at it", "busy": True}, "busy"),
        (
            {
                "failed": True,
                "msg": "host_timeout (5s) ran out during the grace wait (policy.grace 4s) on 127.0.1.1:5432; raise it",
            },
            "timeout",
        ),
        (
            {
                "failed": True,
                "msg": "1 sessions were ended on db1 (terminated 1, cancelled 0), then the sweep failed: cannot list "
                "sessions on PostgreSQL at db1: server closed the connection unexpectedly",
            },
            "unreachable",
        ),
        (
            {
                "failed": True,
                "msg": "then the sweep failed: x on 127.0.1.53:5432: SSL connection has been closed unexpectedly",
            },
            "unreachable",
        ),
        ({"failed": True, "msg": "Unsupported parameters (x module): host_timeout, query_timeout"}, "error"),
        # What the plugins know better than any message: their own code wins.
        (
            {"failed": True, "msg": "db1 is over its audit thresholds", "dbhygiene": {"failure": "threshold"}},
            "threshold",
        ),
    ],
)
def test_failure_reason_codes(result, code):
    assert _report_model.failure_reason(result) == code
    assert code in _report_model.FAILURE_REASONS


def test_report_gives_each_failed_host_a_code_and_words():
    results = {
        "a": {"dbhygiene": {"seen": 1}},
        "b": {"failed": True, "msg": "cannot connect to PostgreSQL at b:5432 as u: connection refused"},
        "c": {"failed": True, "msg": "over", "dbhygiene": {"failure": "threshold"}},
        "d": None,
    }
    report = _report_kinds.build_report("audit", ["a", "b", "c", "d"], ["a", "b", "c"], results, False, {})
    assert report["failed_host_reasons"] == {"b": "unreachable", "c": "threshold", "d": "no_result"}
    assert report["hosts"]["b"]["reason_code"] == "unreachable"
    assert report["totals"]["failed_by_reason"] == {"unreachable": 1, "threshold": 1, "no_result": 1}
    markdown = _report_kinds.render_markdown(report)
    assert "- **b** (unreachable: the database server could not be reached): cannot connect" in markdown
    assert "- **c** (threshold: over an audit threshold)" in markdown


# ---------------------------------------------------------------- locks in the audit report
def _locks(chains=(), cycles=(), waiting=None, longest=None):
    """A `locks` summary of the contract's shape (docs/architecture.md "Locks", _planner.annotate_locks)."""
    chains = [dict(chain) for chain in chains]
    if waiting is None:
        waiting = sum(chain["blocking"] for chain in chains) + sum(len(cycle) for cycle in cycles)
    if longest is None:
        waits = [chain["blocking_seconds"] for chain in chains if chain["blocking_seconds"] is not None]
        longest = max(waits) if waits else None
    return {"waiting": waiting, "longest_wait_seconds": longest, "chains": chains, "cycles": [list(c) for c in cycles]}


def _chain(root, waiters, seconds, visible=True, **fields):
    chain = {
        "root": root,
        "visible": visible,
        "user": "desk" if visible else None,
        "database": "appdb" if visible else None,
        "application": "psql" if visible else None,
        "state": "idle_in_transaction" if visible else None,
        "blocking": len(waiters),
        "blocking_seconds": seconds,
        "waiters": sorted(waiters),
    }
    chain.update(fields)
    return chain


def _lock_sessions():
    """Root 10 (idle in transaction) <- 11 <- 12, and 13 waiting on 10 too; 20 <-> 21 a cycle."""
    return [
        _session(10, state="idle_in_transaction", user="desk", application="psql", blocking=3, blocking_seconds=42.26),
        _session(11, state="active", blocked_by=[10], lock_wait_seconds=42.26, blocking=1, blocking_seconds=3.0),
        _session(12, state="active", blocked_by=[11], lock_wait_seconds=3.0),
        _session(13, state="active", blocked_by=[10], lock_wait_seconds=12.5),
        _session(20, state="active", blocked_by=[21], lock_wait_seconds=0.4),
        _session(21, state="active", blocked_by=[20], lock_wait_seconds=0.2),
        _session(30, blocked_by=[], lock_wait_seconds=None, blocking=0, blocking_seconds=None),
    ]


def test_audit_summary_shows_the_lock_chains_and_the_longest_wait():
    locks = _locks([_chain(10, [11, 12, 13], 42.26)], cycles=[[20, 21]], waiting=5)
    summary, breaches = _report_model.audit_summary(_lock_sessions(), {}, None, {}, locks)
    assert breaches == []
    assert summary["lock_waiting"] == 5
    assert summary["longest_lock_wait"] == {
        "id": 11,
        "user": "app",
        "database": "appdb",
        "application": "web",
        "state": "active",
        "blocked_by": [10],
        "seconds": 42.3,
    }
    [chain] = summary["lock_chains"]
    assert chain["root"] == 10 and chain["blocking"] == 3 and chain["waiters"] == [11, 12, 13]
    assert chain["user"] == "desk" and chain["state"] == "idle_in_transaction" and chain["blocking_seconds"] == 42.3
    assert summary["lock_cycles"] == [[20, 21]]


def test_the_audit_report_shows_each_hosts_role():
    results = {}
    servers = {
        "db1": {"role": "primary", "platform": {"name": "rds"}},
        "db1-standby": {"role": "standby", "platform": {"name": "self_managed"}},
        "old": {},
    }
    for host, server in servers.items():
        summary, _breaches = _report_model.audit_summary([_session(1)], server, None, {})
        results[host] = {"dbhygiene": dict(summary, engine="postgresql")}
    report = _report_kinds.build_report("audit", sorted(results), sorted(results), results, False, {})
    assert [report["hosts"][h]["role"] for h in ("db1", "db1-standby", "old")] == ["primary", "standby", None]
    markdown = _report_kinds.render_markdown(report)
    assert "| host | engine | role | status | sessions |" in markdown
    assert "| db1 | postgresql | primary, rds | ok | 1 |" in markdown  # a managed service says which
    assert "| db1-standby | postgresql | standby | ok | 1 |" in markdown
    assert "| old | postgresql |  | ok | 1 |" in markdown  # a host whose driver did not say


def test_audit_summary_without_locks_or_waits_has_empty_lock_figures():
    for locks in (None, _locks()):
        summary, breaches = _report_model.audit_summary(
            [_session(1)], {}, None, _report_model.parse_thresholds({"max_lock_wait": 1}), locks
        )
        assert breaches == []
        assert summary["lock_waiting"] == 0 and summary["longest_lock_wait"] is None
        assert summary["lock_chains"] == [] and summary["lock_cycles"] == []


@pytest.mark.parametrize(
    "threshold, breached",
    [("30s", True), (42, True), ("42.2", None), ("1m", False), (43, False)],
)
def test_max_lock_wait_fails_the_host_over_the_longest_wait(threshold, breached):
    if breached is None:  # a duration is whole seconds or a 45s-style string; a decimal string is refused
        with pytest.raises(PolicyError) as error:
            _report_model.parse_thresholds({"max_lock_wait": threshold})
        assert error.value.field == "dbhygiene_audit_thresholds.max_lock_wait"
        return
    thresholds = _report_model.parse_thresholds({"max_lock_wait": threshold})
    locks = _locks([_chain(10, [11, 12, 13], 42.26)])
    _summary, breaches = _report_model.audit_summary(_lock_sessions(), {}, None, thresholds, locks)
    if breached:
        assert breaches == [f"max_lock_wait: 42.3s (threshold {thresholds['max_lock_wait']}): session 11 waits on 10"]
    else:
        assert breaches == []


@pytest.mark.parametrize("raw", ["ten seconds", -5, True, "5 min"])
def test_max_lock_wait_is_validated_as_the_other_durations(raw):
    with pytest.raises(PolicyError) as lock_error:
        _report_model.parse_thresholds({"max_lock_wait": raw})
    with pytest.raises(PolicyError) as trx_error:
        _report_model.parse_thresholds({"max_oldest_transaction": raw})
    assert lock_error.value.field == "dbhygiene_audit_thresholds.max_lock_wait"
    assert str(lock_error.value).replace("max_lock_wait", "X") == str(trx_error.value).replace(
        "max_oldest_transaction", "X"
    )
    assert "max_lock_wait" in _report_model.THRESHOLD_KEYS


def test_a_host_over_max_lock_wait_is_alerting_with_the_threshold_code():
    thresholds = _report_model.parse_thresholds({"max_lock_wait": "10s"})
    summary, breaches = _report_model.audit_summary(
        _lock_sessions(), {}, None, thresholds, _locks([_chain(10, [11, 12, 13], 42.26)])
    )
    summary["breaches"] = breaches
    summary["failure"] = "threshold"
    calm, calm_breaches = _report_model.audit_summary([_session(1)], {}, None, thresholds, _locks())
    calm["breaches"] = calm_breaches
    results = {
        "db1": {"failed": True, "msg": "db1 is over its audit thresholds: " + breaches[0], "dbhygiene": summary},
        "db2": {"changed": False, "dbhygiene": calm},
    }
    report = _report_kinds.build_report("audit", ["db1", "db2"], ["db1", "db2"], results, False, {})
    assert report["failed_host_reasons"] == {"db1": "threshold"}
    assert report["totals"]["alerting"] == 1 and report["hosts"]["db2"]["status"] == "ok"
    assert report["hosts"]["db1"]["longest_lock_wait"]["seconds"] == 42.3


def test_the_fleet_report_lists_every_hosts_lock_chains_longest_wait_first():
    db1, _b = _report_model.audit_summary(
        _lock_sessions(), {}, None, {}, _locks([_chain(10, [11, 12, 13], 42.26)], cycles=[[20, 21]], waiting=5)
    )
    hidden = _chain(7, list(range(100, 115)), 99.0, visible=False)
    db2, _b = _report_model.audit_summary([], {}, None, {}, _locks([_chain(5, [6], None), hidden]))
    db3, _b = _report_model.audit_summary([_session(1)], {}, None, {}, None)
    results = {"db1": {"dbhygiene": db1}, "db2": {"dbhygiene": db2}, "db3": {"dbhygiene": db3}}
    report = _report_kinds.build_report("audit", ["db1", "db2", "db3"], ["db1", "db2", "db3"], results, True, {})
    assert [(chain["host"], chain["root"]) for chain in report["lock_chains"]] == [("db2", 7), ("db1", 10), ("db2", 5)]
    assert report["lock_cycles"] == [{"host": "db1", "sessions": [20, 21]}]
    assert report["totals"]["lock_chains"] == 3 and report["totals"]["lock_waiting"] == 5 + 16
    json.dumps(report)  # the JSON report

    markdown = _report_kinds.render_markdown(report)
    assert "3 lock chains, 21 sessions waiting for a lock.**" in markdown
    lines = markdown.splitlines()
    start = lines.index("## Lock chains")
    rows = [line for line in lines[start:] if line.startswith("| db")]
    assert rows[0].startswith("| db2 | 7 |  |  |  | (not visible to the login) | 15 | 1m39s | 100, 101,")
    assert rows[0].endswith("109 and 5 more |")
    assert rows[1] == "| db1 | 10 | desk | appdb | psql | idle_in_transaction | 3 | 42s | 11, 12, 13 |"
    assert rows[2] == "| db2 | 5 | desk | appdb | psql | idle_in_transaction | 1 |  | 6 |"
    assert any(line.startswith("- **db1**: sessions 20, 21 wait for each other") for line in lines)
    # The host table: the longest lock wait per host.
    host_rows = {
        line.split(" | ")[0][2:]: line for line in lines[: lines.index("## Lock chains")] if line.startswith("| db")
    }
    assert " | 42s | " in host_rows["db1"] and " | 1m39s | " in host_rows["db2"]
    assert host_rows["db3"].endswith(" |  |  |  |")


def test_an_audit_report_without_locks_has_no_lock_section():
    summary, _breaches = _report_model.audit_summary([_session(1)], {}, None, {}, None)
    report = _report_kinds.build_report("audit", ["db1"], ["db1"], {"db1": {"dbhygiene": summary}}, False, {})
    markdown = _report_kinds.render_markdown(report)
    assert "## Lock chains" not in markdown and "lock chain" not in markdown
    assert report["lock_chains"] == [] and report["totals"]["lock_chains"] == 0
    enforce = _report_kinds.build_report("enforce", ["db1"], ["db1"], {"db1": {"dbhygiene": {"seen": 1}}}, False, {})
    assert "lock_chains" not in enforce and "lock_chains" not in enforce["totals"]


def test_brief_leaves_out_the_lock_fields_of_a_session_without_locks():
    plain = _report_model.brief(dict(_session(30, blocked_by=[], lock_wait_seconds=None, blocking=0), rule="r"))
    assert "blocked_by" not in plain and "blocking" not in plain and "lock_wait_seconds" not in plain
    root = _report_model.brief(dict(_lock_sessions()[0], rule="blockers"))
    waiter = _report_model.brief(dict(_lock_sessions()[1], rule="waiters"))
    if "blocking" in _report_model.brief({"blocking": 3}):  # once the record has the lock fields ("Locks")
        assert root["blocking"] == 3 and waiter["blocked_by"] == [10]


def test_max_lock_wait_says_which_lock_waits_the_login_cannot_see():
    thresholds = _report_model.parse_thresholds({"max_lock_wait": "30s"})
    server = {"row_lock_waits_visible": True, "metadata_locks_visible": False}
    summary, breaches = _report_model.audit_summary([_session(1)], server, None, thresholds, _locks())
    assert breaches == [] and summary["lock_waits_hidden"] == ["metadata-lock waits"]
    assert summary["lock_note"] == "max_lock_wait cannot see metadata-lock waits here"
    report = _report_kinds.build_report("audit", ["db1"], ["db1"], {"db1": {"dbhygiene": summary}}, False, {})
    assert "| max_lock_wait cannot see metadata-lock waits here |" in _report_kinds.render_markdown(report)
    # Without the threshold, or where everything is visible (PostgreSQL has no such facts): no note.
    quiet, _breaches = _report_model.audit_summary([_session(1)], server, None, {}, _locks())
    assert "lock_note" not in quiet and quiet["lock_waits_hidden"] == ["metadata-lock waits"]
    for facts in ({}, {"row_lock_waits_visible": True, "metadata_locks_visible": True}):
        seen, _breaches = _report_model.audit_summary([_session(1)], facts, None, thresholds, _locks())
        assert "lock_note" not in seen and seen["lock_waits_hidden"] == []
