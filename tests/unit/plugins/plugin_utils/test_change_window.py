# -*- coding: utf-8 -*-
"""The drain role's controller helpers: the variables' check, the trail lines, the fleet report."""

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _report_kinds
from test_report_model import _session as report_session


def _session(session_id, **fields):
    """A session the drain ends: the fleet report tests' session, in the drained database."""
    drained = {"database": "billing", "idle_seconds": 12.0, "rule": "drain", "action": "cancel_then_terminate"}
    return report_session(session_id, **dict(drained, **fields))


def _change(change, account="PUBLIC", database="billing"):
    return {
        "database": database,
        "databases": [database],
        "account": account,
        "right": "CONNECT",
        "change": change,
        "grantor": "postgres",
        "with_grant_option": False,
        "reason": "holds CONNECT on billing",
    }


DRAINED = {
    "changed": True,
    "state": "drained",
    "databases": ["billing"],
    "changes": [_change("revoked"), _change("granted", account="migrator")],
    "terminated": [_session(11), _session(12)],
    # 12 was cancelled first, then terminated after the grace: one session ended.
    "cancelled": [_session(12, state="active"), _session(15, state="active")],
    "not_ended": [_session(13, user="migrator", reason="protected"), _session(14, reason="gone", detail="left")],
    "closed": ["billing"],
}
CONTEXT = {"login_host": "10.1.0.7", "job_id": 77, "state": "drained"}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"dbhygiene_drain_databases": []}, "dbhygiene_drain_databases: at least one database is required"),
        ({"dbhygiene_drain_databases": ["billing", " "]}, "dbhygiene_drain_databases[1]: must be a non-empty name"),
        ({"dbhygiene_drain_databases": ["a\x00b"]}, "dbhygiene_drain_databases[0]: must not contain a NUL"),
        ({"dbhygiene_drain_databases": ["b"], "dbhygiene_drain_allow_users": [""]}, "dbhygiene_drain_allow_users[0]"),
        (
            {"dbhygiene_drain_databases": ["b"], "dbhygiene_drain_grace": "soon"},
            "dbhygiene_drain_grace: invalid duration 'soon'",
        ),
        (
            {"dbhygiene_drain_databases": ["b"], "dbhygiene_drain_grace": "2h"},
            "dbhygiene_drain_grace: duration '2h' is above",
        ),
        (
            {"dbhygiene_drain_databases": ["b"], "dbhygiene_drain_state": "closed"},
            "dbhygiene_drain_state: must be one of",
        ),
        (
            {"dbhygiene_drain_databases": ["b"], "dbhygiene_drain_grace": "5m", "dbhygiene_host_timeout": 60},
            "dbhygiene_host_timeout: grace (300s) + wait_timeout (10s)",
        ),
    ],
)
def test_a_bad_variable_is_named_with_its_value(values, message):
    problems = _change_window.variable_problems(values)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_good_variables_and_the_defaults_pass():
    assert _change_window.variable_problems({"dbhygiene_drain_databases": ["billing"]}) == []
    values = {
        "dbhygiene_drain_databases": ["billing", "ledger"],
        "dbhygiene_drain_allow_users": ["migrator"],
        "dbhygiene_drain_grace": 45,
        "dbhygiene_drain_state": "open",
    }
    assert _change_window.variable_problems(values) == []


def test_request_error_names_the_module_option():
    error = _change_window.request_error({"databases": ["b"], "grace": "1 minute"})
    assert error.field == "grace" and "1 minute" in str(error)
    assert _change_window.request_error({"databases": ["b"]}) is None


def test_trail_has_a_line_per_change_and_per_session_ended():
    lines = _change_window.trail_records("pg1", "postgresql", DRAINED, False, CONTEXT)
    assert [(line["action"], line["outcome"]) for line in lines] == [
        ("revoke", "revoked"),
        ("grant", "granted"),
        ("cancel_then_terminate", "cancelled"),
        ("cancel_then_terminate", "cancelled"),
        ("cancel_then_terminate", "terminated"),
        ("cancel_then_terminate", "terminated"),
        ("cancel_then_terminate", "not_ended"),
    ]
    for line in lines:
        assert line["policy"] == "drain" and line["rule"] == "drain" and line["drain_state"] == "drained"
        assert line["host"] == "pg1" and line["login_host"] == "10.1.0.7" and line["job_id"] == 77
        assert line["check_mode"] is False and line["time"].endswith("Z")
    assert lines[1]["account"] == "migrator" and lines[1]["database"] == "billing" and lines[1]["right"] == "CONNECT"
    assert lines[6]["reason"] == "gone" and lines[6]["id"] == 14  # the protected session has no line


def test_check_mode_lines_say_would():
    lines = _change_window.trail_records("pg1", "postgresql", DRAINED, True, CONTEXT)
    assert [line["outcome"] for line in lines] == [
        "would_revoke",
        "would_grant",
        "would_cancel",
        "would_cancel",
        "would_terminate",
        "would_terminate",
        "not_ended",
    ]
    assert all(line["check_mode"] is True for line in lines)
    locks = dict(DRAINED, changes=[_change("locked", account="'app'@'%'")])
    assert _change_window.trail_records("my1", "mysql", locks, True, CONTEXT)[0]["outcome"] == "would_lock"


def test_nothing_changed_is_no_line():
    assert (
        _change_window.trail_records("pg1", "postgresql", {"state": "drained", "closed": ["billing"]}, False, {}) == []
    )


def _report(results, check_mode=False):
    hosts = sorted(results)
    registered = {}
    for host, result in results.items():
        if result is None:
            registered[host] = None
            continue
        summary = {"engine": "postgresql", "check_mode": check_mode}
        summary.update(_change_window.drain_summary(result))
        registered[host] = dict(result, dbhygiene=summary)
    active = [host for host in hosts if registered[host] is not None]
    return _report_kinds.build_report("drain", hosts, active, registered, check_mode, {"run": "r1"})


def test_the_report_says_what_was_closed_ended_and_is_still_closed():
    failed = {"failed": True, "msg": "could not connect to server: Connection refused"}
    report = _report({"pg1": DRAINED, "pg2": dict(DRAINED, changes=[], terminated=[], cancelled=[]), "pg3": failed})
    totals = report["totals"]
    assert totals["hosts"] == 3 and totals["ok"] == 2 and totals["failed"] == 1
    assert totals["changes"] == 2 and totals["terminated"] == 2 and totals["cancelled"] == 2
    assert totals["ended"] == 3  # 11, 12 (cancelled, then terminated) and 15
    assert totals["not_ended"] == 2  # gone, on pg1 and pg2; the protected ones are not counted
    assert totals["hosts_still_closed"] == 2 and totals["still_closed"] == 2
    assert "would_end" not in totals and "alerting" not in totals
    assert report["failed_host_reasons"] == {"pg3": "unreachable"}
    assert report["hosts"]["pg1"]["still_closed"] == ["billing"]
    assert report["hosts"]["pg3"].get("still_closed") is None
    markdown = _change_window.render_markdown(report)
    assert markdown.startswith("# Change window\n")
    assert (
        "**3 hosts: 2 ok, 1 failed. 2 rights changed, 3 sessions ended (2 terminate, 2 cancel), 2 not ended; "
        in markdown
    )
    assert "| pg1 | postgresql | ok | drained | billing | 2 | 3 | billing |" in markdown
    assert "| pg1 | revoked | CONNECT PUBLIC on billing | holds CONNECT on billing |" in markdown
    assert "| pg3 | postgresql | failed |  |  | 0 | 0 | unknown |" in markdown
    assert "## Sessions ended" in markdown and "not ended: gone" in markdown
    assert "**pg3** (unreachable" in markdown


def test_the_report_marks_a_drain_on_a_replica():
    on_replica = dict(DRAINED, changes=[], role="standby", replica=True, not_drained_on_primary=["billing"])
    report = _report({"pg1": DRAINED, "pg1-standby": on_replica})
    entry = report["hosts"]["pg1-standby"]
    assert entry["replica"] is True and entry["role"] == "standby" and entry["not_drained_on_primary"] == ["billing"]
    assert report["hosts"]["pg1"]["replica"] is False
    markdown = _change_window.render_markdown(report)
    assert (
        "| pg1-standby | postgresql | ok | drained (on a standby: rights from the primary) | billing | 0 |" in markdown
    )
    assert "| pg1 | postgresql | ok | drained | billing | 2 |" in markdown


def test_the_report_of_an_open_and_of_a_dry_run():
    opened = dict(DRAINED, state="open", changes=[_change("granted")], terminated=[], cancelled=[], closed=[])
    report = _report({"pg1": opened}, check_mode=True)
    assert report["totals"]["hosts_still_closed"] == 0 and report["check_mode"] is True
    markdown = _change_window.render_markdown(report)
    assert "(check mode: nothing was changed)" in markdown and "1 rights would change" in markdown
    assert "| pg1 | would be granted | CONNECT PUBLIC on billing |" in markdown
    assert "| nothing |" in markdown


def test_a_drain_that_failed_half_way_is_in_the_trail_and_the_report():
    half = dict(
        DRAINED,
        failed=True,
        state_unknown=True,
        msg="drained failed on db-1 after 1 rights changed (billing still closed / state unknown)",
        changes=[dict(_change("locked", account="'a'@'%'"), status="done"), dict(_change("locked"), status="unknown")],
        terminated=[],
        cancelled=[],
        not_ended=[],
    )
    lines = _change_window.trail_records("my1", "mysql", half, False, CONTEXT)
    assert [(line["account"], line["outcome"]) for line in lines] == [("'a'@'%'", "locked"), ("PUBLIC", "unknown")]
    report = _report({"my1": half})
    totals = report["totals"]
    assert totals["changes"] == 1 and totals["changes_unknown"] == 1
    assert totals["hosts_still_closed"] == 1 and totals["hosts_unknown"] == 1
    markdown = _change_window.render_markdown(report)
    assert "1 rights changed (1 more sent when a host failed: made or not, unknown)" in markdown
    assert "1 hosts still closed, 1 hosts in a state unknown" in markdown
    assert "| billing (state unknown) |" in markdown
    assert "| my1 | locked? (sent when the host failed: made or not, unknown) |" in markdown
