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
    _planner,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError


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


def test_defaults_and_normalization():
    request = _drain_request.parse_request(options(databases=["billing", "billing", "other"], grace=5))
    assert request.databases == ["billing", "other"] and request.state == "drained" and request.grace == 5
    assert _drain_request.parse_request(options(grace=None)).grace == 30
    assert _drain_request.parse_request(options(grace="1m30s")).grace == 90


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"databases": []}, "databases", "at least one"),
        ({"databases": None}, "databases", "at least one"),
        ({"databases": "billing"}, "databases", "list"),
        ({"databases": [""]}, "databases[0]", "non-empty"),
        ({"databases": ["ok", 3]}, "databases[1]", "non-empty"),
        ({"databases": ["a\x00b"]}, "databases[0]", "NUL"),
        ({"databases": ["x" * 300]}, "databases[0]", "longer than"),
        ({"allow_users": ["  "]}, "allow_users[0]", "non-empty"),
        ({"state": "closed"}, "state", "drained, open"),
        ({"grace": "soon"}, "grace", "invalid duration"),
        ({"grace": "2h"}, "grace", "maximum"),
        ({"grace": -1}, "grace", "negative"),
        ({"wait_timeout": -1}, "wait_timeout", "or more"),
        ({"host_timeout": 0}, "host_timeout", "more than"),
        ({"grace": "4m", "wait_timeout": 60, "host_timeout": 300}, "host_timeout", "grace (240s) + wait_timeout"),
    ],
)
def test_bad_options_name_the_field_and_the_value(overrides, field, words):
    with pytest.raises(PolicyError) as caught:
        _drain_request.parse_request(options(**overrides))
    assert caught.value.field == field
    assert words in str(caught.value), str(caught.value)
    assert "policy.grace" not in str(caught.value)


def test_the_policy_matches_the_names_literally():
    request = _drain_request.parse_request(options(databases=["bill*", "a?[b"], allow_users=["mig*"]))
    policy = request.policy
    assert [r.action for r in policy.rules] == ["cancel_then_terminate"]
    with_users = _drain_request.drain_policy(["billing"], [], 5, users=["app*"])
    assert [r.name for r in with_users.rules] == ["drain", "drain-account"]
    # the locked logins' sessions on any database, or none
    assert with_users.match({"id": 1, "key": "1", "user": "app*", "database": None, "superuser": False})
    assert with_users.match({"id": 1, "key": "1", "user": "apple", "database": "x", "superuser": False}) is None

    def session(**fields):
        base = {"id": 1, "key": "1@x", "user": "app", "database": "bill*", "state": "idle", "superuser": False}
        base.update(fields)
        return base

    assert policy.match(session()) is not None
    assert policy.match(session(database="a?[b")) is not None
    assert policy.match(session(database="billing")) is None  # no glob: only the name itself
    assert policy.match(session(database="axb")) is None
    assert _drain_request._glob_literal("a*b?c[d]") == "a[*]b[?]c[[]d]"


def test_protect_allow_users_and_superusers():
    policy = _drain_request.parse_request(options(allow_users=["mig*"])).policy
    assert policy.protect.superusers is True
    assert policy.protect.protects({"user": "mig*", "database": "billing", "superuser": False})
    assert not policy.protect.protects({"user": "migrator", "database": "billing", "superuser": False})


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


def test_the_drain_ends_every_target_whatever_its_state_and_again_until_none_is_left():
    flipper = entry("1", state="active", state_since="t0")
    idle = entry("2")
    late = entry("3", database=None)  # a locked login's session on no database, seen later
    other = entry("4", user="clerk", database="other")  # not a target
    allowed = entry("5", user="root", superuser=True)
    server = FakeServer(
        [
            [flipper, idle, other, allowed],
            [dict(flipper, state="idle", state_since="t1"), other, allowed],  # grace: the cancel took
            [dict(flipper, state="active", state_since="t2"), other, allowed, late],  # it flipped back; one more
        ]
    )
    result = close(server, users=["app"])
    assert not result.get("failed"), result
    assert ("1", "cancel") in server.ended and ("1", "terminate") in server.ended  # no idle proof
    assert ("2", "terminate") in server.ended and ("3", "terminate") in server.ended
    assert [k for k, _m in server.ended if k in ("4", "5")] == []
    assert sorted(e["key"] for e in result["terminated"]) == ["1", "2", "3"]
    assert [e["key"] for e in result["cancelled"]] == ["1"]
    assert [(e["key"], e["reason"]) for e in result["not_ended"]] == [("5", "protected")]
    assert result["summary"]["rounds"] >= 2


def test_a_session_still_there_at_the_end_fails_the_drain_naming_it():
    server = FakeServer([[entry("7", user="app", database="billing")]], stubborn=["7"])
    result = close(server, wait_timeout=1)
    assert result["failed"] and "1 sessions still on the drained databases of db-1" in result["msg"]
    assert "7 (app@billing)" in result["msg"]
    assert [(e["key"], e["reason"]) for e in result["not_ended"]] == [("7", "still_present")]
    assert result["terminated"] == []  # not counted as ended: it is still there
    assert 2 < len(server.ended) <= _drain_closing.CLOSE_ROUNDS + 1  # terminated again each round, bounded


def test_a_failure_while_closing_keeps_what_was_ended():
    server = FakeServer([[entry("1")]])

    def broken():
        raise _errors.SessionError("the connection is closed")

    original = server.list_sessions
    calls = []

    def listing():
        calls.append(1)
        if len(calls) > 1:
            broken()
        return original()

    server.list_sessions = listing
    result = close(server)
    assert result["failed"] and "the connection is closed" in result["msg"]
    assert [e["key"] for e in result["terminated"]] == ["1"]


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


def test_argument_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.dbhygiene.sessions.plugins.doc_fragments._drain import ModuleDocFragment

    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = _drain_request.drain_argument_spec()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default") or name == "grace", name


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


def test_a_session_that_left_before_its_kill_is_no_failure():
    server = FakeServer([[entry("1"), entry("2")]])
    original = server.end_session

    def end_session(session, mode):
        if session["key"] == "1":
            server.gone.add("1")  # it left between the listing and the KILL: unknown thread
            raise _errors.SessionError("cannot terminate thread 1: (1094, 'Unknown thread id: 1')")
        return original(session, mode)

    server.end_session = end_session
    result = close(server)
    assert not result.get("failed"), result
    assert [e["key"] for e in result["terminated"]] == ["2"]
    stubborn = FakeServer([[entry("3")]], stubborn=["3"])

    def denied(session, mode):
        raise _errors.SessionError("access denied")

    stubborn.end_session = denied
    result = close(stubborn, wait_timeout=0.5)
    assert result["failed"] and "the last signal that failed: access denied" in result["msg"]


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


def test_the_drain_ends_every_session_on_its_databases_whatever_the_default_limits():
    # A change window asks for every session on its databases: 1 of 1, or 500, is not above a limit.
    policy = _drain_request.drain_policy(["billing"], [], 30)
    sessions = [{"id": n, "user": "app", "database": "billing", "state": "idle"} for n in range(500)]
    plan = _planner.plan(sessions, policy)
    assert plan.limit_error is None and len(plan.victims) == 500
    assert policy.limits.to_dict() == {"max_terminations": "unlimited", "max_fraction": "unlimited"}


class RecordingJournal(object):
    """The runner's Journal hook: each `ending` batch with how many signals had gone out when it came."""

    def __init__(self, server, fail=None):
        self.server = server
        self.fail = fail
        self.batches = []

    def ending(self, entries):
        if self.fail:
            raise self.fail
        self.batches.append((len(self.server.ended), [e["key"] for e in entries], entries))


def _journaled_close(server, journal, users=()):
    request = _drain_request.parse_request(options(grace=1, wait_timeout=2, host_timeout=60))
    deadline = _deadline.Deadline(60, clock=FakeClock())
    return _drain_closing.end_sessions(server, server, request, users, False, deadline, journal)


def test_each_session_is_journaled_ending_before_its_first_signal_and_once():
    flipper = entry("1", state="active", state_since="t0")
    late = entry("3", database=None)
    server = FakeServer(
        [
            [flipper, entry("2")],
            [dict(flipper, state="idle", state_since="t1")],
            [dict(flipper, state="active", state_since="t2"), late],  # back, and one more of a locked login
        ]
    )
    journal = RecordingJournal(server)
    result = _journaled_close(server, journal, users=["app"])
    assert not result.get("failed"), result
    # the first round's targets in one write before any signal; the late one before its terminate
    assert [(sent, keys) for sent, keys, _e in journal.batches][0] == (0, ["1", "2"])
    assert [keys for _s, keys, _e in journal.batches] == [["1", "2"], ["3"]]  # each session once
    sent_before_late = journal.batches[1][0]
    assert server.ended.index(("3", "terminate")) >= sent_before_late
    assert all(e["rule"] and e["action"] == "cancel_then_terminate" for _s, _k, es in journal.batches for e in es)


def test_a_journal_that_cannot_be_written_signals_nothing():
    server = FakeServer([[entry("1"), entry("2", state="active")]])
    result = _journaled_close(server, RecordingJournal(server, OSError(28, "No space left on device", "/t")))
    assert server.ended == []
    assert result["failed"] and "the audit trail could not be written" in result["msg"], result
    assert "No space left on device" in result["msg"] and result["terminated"] == []


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


# ---------------------------------------------------------------- a run on the host: only what the trail holds
LOCK_A = {"change": "locked", "account": "'a'@'%'", "right": "ACCOUNT LOCK", "grantor": None, "databases": ["billing"]}
LOCK_B = dict(LOCK_A, account="'b'@'%'")


def _gated_close(server, journaled_sessions):
    request = _drain_request.parse_request(options(grace=1, wait_timeout=2, host_timeout=60))
    deadline = _deadline.Deadline(60, clock=FakeClock())
    gate = _drain_rights.plan_gate({"journaled_sessions": journaled_sessions}, check_mode=False)
    return _drain_closing.end_sessions(server, server, request, (), False, deadline, gate)


def test_a_gated_run_ends_the_journaled_sessions_and_stops_at_one_that_got_in_since():
    late = entry("3")
    server = FakeServer([[entry("1"), entry("2")], [late]])  # "3" logged in after the plan
    result = _gated_close(server, ["1", "2"])
    assert sorted(key for key, _mode in server.ended) == ["1", "2"]  # "3" never signalled
    assert result["failed"] and "beyond the plan" in result["msg"]
    assert [e["key"] for e in result["beyond_plan"]["sessions"]] == ["3"]
    assert sorted(e["key"] for e in result["terminated"]) == ["1", "2"]
    # journaled too, the next run ends it
    again = _gated_close(FakeServer([[late]]), ["1", "2", "3"])
    assert not again.get("failed") and [e["key"] for e in again["terminated"]] == ["3"]
    assert "beyond_plan" not in again


def test_a_gated_batch_with_one_session_beyond_the_plan_sends_nothing_of_it():
    server = FakeServer([[entry("1"), entry("2")]])
    result = _gated_close(server, ["1"])
    assert server.ended == [] and [e["key"] for e in result["beyond_plan"]["sessions"]] == ["2"]


def test_a_gated_change_beyond_the_plan_stops_the_rights_before_it_is_sent():
    gate = _drain_rights.plan_gate({"journaled_changes": [_drain_rights.change_key(LOCK_A)]}, check_mode=False)
    progress = _drain_rights.Progress("db-1", gate)
    progress.sending([LOCK_A])  # journaled: goes through
    progress.made([LOCK_A])
    with pytest.raises(_drain_rights.RightsError) as caught:
        progress.sending([LOCK_A, LOCK_B])
    error = caught.value
    assert error.beyond is not None and [c["account"] for c in error.beyond.changes] == ["'b'@'%'"]
    assert error.unknown is False and [c["status"] for c in error.changes] == ["done"]
    result = _drain._failed_rights(_drain_request.parse_request(options()), error)
    assert result["state_unknown"] is False


def test_no_gate_without_journaled_keys_or_in_check_mode():
    assert _drain_rights.plan_gate({}, check_mode=False) is None
    assert _drain_rights.plan_gate({"journaled_changes": []}, check_mode=True) is None
    assert (
        _drain_rights.plan_gate({"journaled_changes": []}, check_mode=False) is not None
    )  # nothing journaled: nothing goes


def test_a_change_key_names_change_account_right_grantor_and_databases():
    assert _drain_rights.change_key(LOCK_A) != _drain_rights.change_key(LOCK_B)
    assert _drain_rights.change_key(dict(LOCK_A, databases=None, database="billing")) == _drain_rights.change_key(
        LOCK_A
    )
