# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine-neutral drain: options checked before connecting, the policy that ends the
sessions, the merge of its two passes. What the drains do on a server is tested in
tests/integration/test_{postgresql,mysql}_drain.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _deadline,
    _drain,
    _drain_closing,
    _drain_request,
    _drain_rights,
    _errors,
)


def options(**overrides):
    base = {
        "databases": ["billing"],
        "state": "drained",
        "allow_users": [],
        "grace": "30s",
        "wait_timeout": 10.0,
        "host_timeout": 300.0,
    }
    base.update(overrides)
    return base


def entry(key, **fields):
    base = {"id": int(key), "key": key, "user": "app", "database": "billing", "state": "idle", "superuser": False}
    base.update(fields)
    return base


class FakeClock(object):
    def __init__(self):
        self.at = 0.0

    def now(self):
        return self.at

    def sleep(self, seconds):
        self.at += seconds


class FakeServer(object):
    """A driver and a rights object: listings follow `script` (one per listing, the last one
    repeats); every end is recorded, and an ended session leaves the next listings unless
    it is `stubborn` (it comes back: a login that keeps reconnecting, under the same key)."""

    target = "db-1"
    own_id = 999

    def __init__(self, script, stubborn=()):
        self.script = list(script)
        self.stubborn = set(stubborn)
        self.ended = []
        self.gone = set()

    def list_sessions(self):
        listing = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return [dict(s) for s in listing if s["key"] not in self.gone]

    def end_session(self, session, mode):
        self.ended.append((session["key"], mode))
        if mode == "terminate" and session["key"] not in self.stubborn:
            self.gone.add(session["key"])
        return True


def close(server, users=(), grace=1, wait_timeout=2):
    request = _drain_request.parse_request(options(grace=grace, wait_timeout=wait_timeout, host_timeout=60))
    deadline = _deadline.Deadline(60, clock=FakeClock())
    return _drain_closing.end_sessions(server, server, request, users, False, deadline)


def test_a_rights_failure_half_way_says_what_changed_and_what_is_unknown():
    request = _drain_request.parse_request(options(databases=["billing"]))
    progress = _drain_rights.Progress("db-1")
    progress.closed = ["billing"]
    progress.made([{"account": "'a'@'%'", "change": "locked"}] * 4)
    error = progress.failed(_errors.SessionError("no answer within query_timeout"), sent=[{"account": "x"}])
    result = _drain._failed_rights(request, error)
    assert result["failed"] and result["state_unknown"] and result["closed"] == ["billing"]
    assert "after 4 rights changed, 1 more sent when it failed" in result["msg"]
    assert "billing still closed / state unknown" in result["msg"]
    assert [c["status"] for c in result["changes"]] == ["done"] * 4 + ["unknown"]


def test_closed_in_check_mode_is_what_it_would_be():
    record = [{"database": "a"}, {"database": "b"}]
    drained = _drain_request.parse_request(options(databases=["c"]))
    opened = _drain_request.parse_request(options(databases=["a"], state="open"))
    assert _drain._closed(record, drained, check_mode=True) == ["a", "b", "c"]
    assert _drain._closed(record, drained, check_mode=False) == ["a", "b"]
    assert _drain._closed(record, opened, check_mode=True) == ["b"]


def _returned(module):
    import yaml

    return set(yaml.safe_load(module.RETURN))


def test_every_result_key_is_documented_in_both_modules():
    """RETURN is the drain role's contract: the keys run_drain returns, no more, no less."""
    from ansible_collections.dbhygiene.sessions.plugins.modules import mysql_drain, postgresql_drain

    common = {
        "state",
        "databases",
        "changes",
        "restored",
        "closed",
        "record",
        "terminated",
        "cancelled",
        "not_ended",
        "summary",
        "queries",
        "check_mode",
    }
    common |= {"state_unknown", "role", "replica", "not_drained_on_primary", "record_before", "failed_statement"}
    common |= {"settled", "beyond_plan"}
    # A drain without superuser on a managed platform: the grants it could not revoke.
    assert _returned(postgresql_drain) == common | {"grants_not_changed"}
    mysql_only = {"accounts_locked", "accounts_unlocked", "accounts_already_locked"}
    mysql_only |= {"public_revoked", "public_restored"}
    assert _returned(mysql_drain) == common | mysql_only
    assert "skipped" not in _returned(mysql_drain)


class FakeReplica(FakeServer):
    """A standby / replica: its rights object changes nothing; the primary's record replicated here
    lists `recorded` as drained, with the accounts `locked` for them."""

    query_templates = staticmethod(lambda: [])

    def __init__(self, script, recorded=(), locked=()):
        FakeServer.__init__(self, script)
        self.recorded = list(recorded)
        self.locked = locked
        self.lock_taken = False

    def acquire_sweep_lock(self, timeout):
        self.lock_taken = True
        return True

    def release_sweep_lock(self):
        self.lock_taken = False

    def on_replica(self, request):
        return _drain_rights.RightsOutcome([], [], [], users=self.locked)

    def record(self):
        return [{"database": db, "changes": []} for db in self.recorded]

    record_before = record

    def drain(self, request, check_mode):
        raise AssertionError("a replica's rights are never changed")

    open = drain


@pytest.mark.parametrize("check_mode", [False, True])
def test_on_a_replica_no_right_changes_and_its_sessions_end(check_mode):
    server = FakeReplica([[entry("1"), entry("2", database="other", user="locked_app")]], ["billing"], ["locked_app"])
    request = _drain_request.parse_request(options(databases=["billing", "later"], host_timeout=60))
    result = _drain.run_drain(server, server, request, check_mode, diff=True, role="replica")
    assert result["replica"] is True and result["role"] == "replica"
    assert result["changes"] == [] and result["changed"] is True
    # the sessions on the databases, and those of the accounts the primary's record locked (any database)
    assert sorted(e["key"] for e in result["terminated"]) == ["1", "2"]
    assert sorted(k for k, _mode in server.ended) == ([] if check_mode else ["1", "2"])
    # what is closed here is the primary's record as replicated, in check mode too
    assert result["closed"] == ["billing"] and result["not_drained_on_primary"] == ["later"]
    assert "not changed here" in result["diff"]["before"] and not server.lock_taken
    opened = _drain.run_drain(
        server, server, _drain_request.parse_request(options(state="open")), check_mode, role="standby"
    )
    assert opened["replica"] is True and opened["changed"] is False and opened["not_drained_on_primary"] == []
    assert opened["closed"] == ["billing"]


def test_a_primary_says_it_is_none():
    server = FakeReplica([[entry("1")]])
    server.drain = lambda request, check_mode: _drain_rights.RightsOutcome([], [], [], closed=request.databases)
    result = _drain.run_drain(server, server, _drain_request.parse_request(options(host_timeout=60)), True)
    assert result["replica"] is False and result["role"] == "primary" and result["not_drained_on_primary"] == []


def test_a_drain_or_an_open_settles_the_sessions_an_earlier_run_left_unknown_before_any_change():
    server = FakeReplica([[entry("1"), entry("2", database="other")]])
    events = []
    listing = server.list_sessions
    server.list_sessions = lambda: events.append("list") or listing()
    server.drain = lambda request, check_mode: events.append(request.state) or _drain_rights.RightsOutcome([], [], [])
    server.open = server.drain
    for state in ("drained", "open"):
        del events[:]
        request = _drain_request.parse_request(options(state=state, host_timeout=60, settle_keys=["2", "9"]))
        result = _drain.run_drain(server, server, request, False)
        assert result["settled"][0] == {"key": "2", "outcome": "still_present", "session": entry("2", database="other")}
        assert result["settled"][1] == {"key": "9", "outcome": "terminated"}
        assert events[:2] == ["list", state]  # looked up before the rights change
    assert "settled" not in _drain.run_drain(
        server, server, _drain_request.parse_request(options(host_timeout=60)), True
    )
