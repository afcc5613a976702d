# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain role's runs on the host held to its trail (plugins/action/session_drain.py
_run_module): plan, journal, run with what was journaled, and again for what was beyond the
plan, at most BEYOND_PLAN_ROUNDS runs. The module's answers are scripted here; what the module
does on real servers is tests/integration/test_drain_beyond_plan.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.action import session_drain
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import change_key
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _journal

LOCK = {"change": "locked", "account": "'a'@'%'", "right": "ACCOUNT LOCK", "grantor": None, "databases": ["billing"]}
LATE = dict(LOCK, account="'late'@'%'")


def _session(key):
    return {"id": int(key), "key": key, "user": "app", "database": "billing", "rule": "drain", "action": "terminate"}


class _Task(object):
    check_mode = False
    diff = False


class _Action(object):
    """What _run_module uses of the action: the task and run_engine_module (scripted)."""

    def __init__(self, answers):
        self._task = _Task()
        self.answers = list(answers)
        self.calls = []

    def run_engine_module(self, engine, kind, args, run_on, task_vars, check_mode, diff=False, journal=None):
        self.calls.append((check_mode, dict(args)))
        return self.answers.pop(0)


def _journal_at(tmp_path):
    context = {"login_host": "db1", "job_id": None, "state": "drained", "run_id": "run-1"}
    return _journal.DrainJournal(str(tmp_path / "audit.jsonl"), "db1", "mysql", context)


def _lines(tmp_path):
    with open(str(tmp_path / "audit.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def _run(action, journal):
    return session_drain.ActionModule._run_module(
        action, "mysql", {"databases": ["billing"]}, "host", {}, False, journal
    )


def test_what_arrived_after_the_plan_is_journaled_then_made_in_another_run(tmp_path):
    plan = {"changes": [LOCK], "terminated": [_session("1")], "record_before": []}
    first = {"failed": True, "changes": [], "terminated": [], "beyond_plan": {"changes": [LATE], "sessions": []}}
    second = {"failed": True, "changes": [dict(LOCK), dict(LATE)], "terminated": [_session("1")],
              "summary": {"terminated": 1}, "beyond_plan": {"changes": [], "sessions": [_session("2")]}}  # fmt: skip
    third = {"changes": [], "terminated": [_session("2")], "summary": {"terminated": 1}, "closed": ["billing"]}
    action = _Action([plan, first, second, third])
    journal = _journal_at(tmp_path)
    result = _run(action, journal)
    assert [check for check, _args in action.calls] == [True, False, False, False]
    # each run is given what the trail held when it started
    assert [sorted(args["journaled_changes"]) for _check, args in action.calls[1:]] == [
        [change_key(LOCK)],
        sorted([change_key(LOCK), change_key(LATE)]),
        sorted([change_key(LOCK), change_key(LATE)]),
    ]
    assert [args["journaled_sessions"] for _check, args in action.calls[1:]] == [["1"], ["1"], ["1", "2"]]
    lines = _lines(tmp_path)
    assert [(line["outcome"], line.get("account") or line.get("id")) for line in lines] == [
        ("changing", "'a'@'%'"),
        ("ending", 1),
        ("changing", "'late'@'%'"),
        ("ending", 2),
    ]
    # one result of the three runs: every change and session, the last run's outcome
    assert not result.get("failed") and "beyond_plan" not in result
    assert [c["account"] for c in result["changes"]] == ["'a'@'%'", "'late'@'%'"]
    assert [s["key"] for s in result["terminated"]] == ["1", "2"] and result["summary"]["terminated"] == 2
    assert result["closed"] == ["billing"] and result["record_before"] == []


def test_logins_that_keep_arriving_stop_it_after_the_last_run(tmp_path):
    plan = {"changes": [], "terminated": [_session("1")], "record_before": []}
    rounds = [
        {
            "failed": True,
            "changes": [],
            "terminated": [],
            "beyond_plan": {"changes": [], "sessions": [_session(str(n))]},
        }
        for n in range(2, 2 + session_drain.BEYOND_PLAN_ROUNDS)
    ]
    action = _Action([plan] + rounds)
    result = _run(action, _journal_at(tmp_path))
    assert len(action.calls) == 1 + session_drain.BEYOND_PLAN_ROUNDS
    assert result["failed"] and f"{session_drain.BEYOND_PLAN_ROUNDS} runs on the host" in result["msg"]
    assert "0 changes and 1 sessions were not sent (nor written to the trail)" in result["msg"]
    # the last one beyond was neither written nor sent
    last = str(1 + session_drain.BEYOND_PLAN_ROUNDS)
    assert last not in {line.get("key") for line in _lines(tmp_path)}
