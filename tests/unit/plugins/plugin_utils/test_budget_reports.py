# -*- coding: utf-8 -*-
"""Budgets in the reports: each victim's group, and per host the groups over budget
(size, kept, ended) in the JSON report and its Markdown."""

from ansible_collections.dbhygiene.sessions.plugins.module_utils._planner import plan
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _report_kinds, _report_model


def _session(session_id, user, since):
    return {
        "id": session_id,
        "key": f"{session_id}@x",
        "user": user,
        "database": "shop",
        "application": "pool|web",
        "client_addr": "10.0.0.1",
        "state": "idle",
        "state_since": f"2024-01-01T00:00:{since:02d}+00:00",
        "idle_seconds": 60.0 - since,
        "superuser": False,
    }


POLICY = parse_policy(
    {
        "name": "budget",
        "rules": [{"name": "pool", "states": ["idle"], "per": ["user", "application"], "keep": 1}],
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},
    }
)
SESSIONS = [_session(1, "a", 1), _session(2, "a", 2), _session(3, "a", 3), _session(4, "b", 4)]


def test_the_audit_report_lists_each_host_s_groups_over_budget_in_json_and_markdown():
    plan_dict = plan(SESSIONS, POLICY).to_dict()
    summary, breaches = _report_model.audit_summary(SESSIONS, {}, plan_dict, {})
    assert breaches == []
    assert summary["groups_over_budget"] == [
        {"rule": "pool", "group": {"user": "a", "application": "pool|web"}, "size": 3, "kept": 1, "ended": 2}
    ]
    assert [(entry["id"], entry["group_size"], entry["kept"], entry["rank"]) for entry in summary["would_end"]] == [
        (1, 3, 1, 3),
        (2, 3, 1, 2),
    ]
    report = _report_kinds.build_report("audit", ["db1"], ["db1"], {"db1": {"dbhygiene": summary}}, False, {})
    assert report["hosts"]["db1"]["groups_over_budget"] == summary["groups_over_budget"]
    markdown = _report_kinds.render_markdown(report)
    assert "## Groups over budget" in markdown
    assert "| host | rule | group | size | kept | to end |" in markdown
    assert "| db1 | pool | user=a, application=pool\\|web | 3 | 1 | 2 |" in markdown


def test_a_report_without_budgets_has_no_groups_table():
    plan_dict = plan(SESSIONS, parse_policy({"rules": [{"states": ["idle"]}]})).to_dict()
    summary = _report_model.audit_summary(SESSIONS, {}, plan_dict, {})[0]
    assert "groups_over_budget" not in summary
    report = _report_kinds.build_report("audit", ["db1"], ["db1"], {"db1": {"dbhygiene": summary}}, False, {})
    assert "Groups over budget" not in _report_kinds.render_markdown(report)


def test_the_enforce_report_says_what_each_group_ended():
    result = {
        "policy": {"name": "budget"},
        "summary": {"seen": 4},
        "terminated": [dict(SESSIONS[0], rule="pool", action="terminate", group={}, group_size=4, kept=3, rank=4)],
        "groups": [{"rule": "pool", "group": {}, "size": 4, "kept": 3, "ended": 1}],
    }
    summary = _report_model.enforce_summary(result)
    assert summary["terminated"][0]["group"] == {} and summary["terminated"][0]["rank"] == 4
    report = _report_kinds.build_report("enforce", ["db1"], ["db1"], {"db1": {"dbhygiene": summary}}, False, {})
    assert "| db1 | pool | (whole host) | 4 | 3 | 1 |" in _report_kinds.render_markdown(report)
    assert "| ended |" in _report_kinds.render_markdown(report)
