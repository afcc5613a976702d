# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _matching, _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._matching import MatchTimeout
from ansible_collections.dbhygiene.sessions.plugins.module_utils._planner import plan
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(_planner.__file__), "..", "..", "..", "..", ".."))


def session(session_id, **overrides):
    record = {
        "id": session_id,
        "key": f"{session_id}@2024-01-01T00:00:00+00:00",
        "user": "app",
        "database": "shop",
        "application": "web",
        "client_addr": "10.2.3.4",
        "state": "idle",
        "connected_seconds": 5000.0,
        "idle_seconds": 4000.0,
        "query_seconds": None,
        "transaction_seconds": None,
        "query": "SELECT 1",
        "superuser": False,
    }
    record.update(overrides)
    return record


SWEEP = {
    "name": "nightly-sweep",
    "rules": [
        {"name": "ghost-idle", "states": ["idle"], "idle_longer_than": "30m"},
        {"name": "runaway-query", "states": ["active"], "running_longer_than": "2h", "action": "cancel"},
    ],
    "protect": {"users": ["backup_*"]},
}


def ids(entries):
    return [entry["session"]["id"] for entry in entries]


def test_plan_victims_not_ended_and_counts():
    sessions = [
        session(30, state="active", query_seconds=9000.0),  # runaway-query
        session(10),  # ghost-idle
        session(20, idle_seconds=60.0),  # no rule
        session(40, user="backup_nightly"),  # ghost-idle, protected
        session(5, state="active", query_seconds=10.0),  # no rule
    ]
    result = plan(sessions, parse_policy(SWEEP))
    assert result.victims == [
        {"session": sessions[1], "rule": "ghost-idle", "action": "terminate"},
        {"session": sessions[0], "rule": "runaway-query", "action": "cancel"},
    ]
    assert result.not_ended == [
        {
            "session": sessions[3],
            "rule": "ghost-idle",
            "reason": "protected",
            "detail": "protect.users matches 'backup_*'",
        }
    ]
    assert result.seen == 5
    assert result.matched == 3
    assert result.limit_error is None
    assert result.ok is True


def test_order_is_by_id_whatever_the_input_order():
    sessions = [session(i) for i in (9, 100, 3, 42, 17)]
    policy = parse_policy(SWEEP)
    forward = plan(sessions, policy)
    backward = plan(list(reversed(sessions)), policy)
    assert ids(forward.victims) == [3, 9, 17, 42, 100]
    assert ids(backward.victims) == [3, 9, 17, 42, 100]


def test_no_sessions():
    result = plan([], parse_policy(SWEEP))
    assert (result.victims, result.not_ended, result.seen, result.matched, result.limit_error) == ([], [], 0, 0, None)


# (id, protect, protected session fields)
PROTECT_WINS = [
    ("users", {"users": ["replicator"]}, {"user": "replicator"}, "protect.users matches 'replicator'"),
    (
        "applications",
        {"applications": ["pg_dump*"]},
        {"application": "pg_dump"},
        "protect.applications matches 'pg_dump*'",
    ),
    ("databases", {"databases": ["billing"]}, {"database": "billing"}, "protect.databases matches 'billing'"),
    (
        "client-addresses",
        {"client_addresses": ["10.1.0.0/16"]},
        {"client_addr": "10.1.0.9"},
        "protect.client_addresses matches '10.1.0.0/16'",
    ),
    ("local", {"client_addresses": ["local"]}, {"client_addr": None}, "protect.client_addresses matches 'local'"),
    ("superusers-default", {}, {"superuser": True}, "superuser"),
    ("superusers-true", {"superusers": True}, {"superuser": True}, "superuser"),
]


@pytest.mark.parametrize(
    "protect, fields, detail", [case[1:] for case in PROTECT_WINS], ids=[case[0] for case in PROTECT_WINS]
)
def test_protect_wins_over_rules(protect, fields, detail):
    # A rule that matches every idle session, named users included.
    policy = parse_policy({"rules": [{"name": "all-idle", "states": ["idle"], "users": ["*"]}], "protect": protect})
    result = plan([session(1), session(2, **fields)], policy)
    assert ids(result.victims) == [1]
    assert result.not_ended == [
        {"session": session(2, **fields), "rule": "all-idle", "reason": "protected", "detail": detail}
    ]
    assert result.matched == 2


def test_superusers_false_leaves_superusers_to_the_rules():
    policy = parse_policy({"rules": [{"states": ["idle"]}], "protect": {"superusers": False}})
    result = plan([session(1, superuser=True)], policy)
    assert ids(result.victims) == [1]
    assert result.not_ended == []


def test_protected_session_no_rule_matches_is_not_listed():
    policy = parse_policy({"rules": [{"states": ["active"]}]})
    result = plan([session(1, superuser=True)], policy)
    assert (result.victims, result.not_ended, result.matched, result.seen) == ([], [], 0, 1)


def test_rule_action_override_reaches_victims():
    policy = parse_policy(
        {
            "action": "cancel_then_terminate",
            "rules": [
                {"name": "inherit", "users": ["a"]},
                {"name": "own-action", "users": ["b"], "action": "cancel"},
            ],
        }
    )
    result = plan([session(1, user="a"), session(2, user="b")], policy)
    assert [(v["rule"], v["action"]) for v in result.victims] == [
        ("inherit", "cancel_then_terminate"),
        ("own-action", "cancel"),
    ]


# (id, own_id, session ids)
OWN_IDS = [
    ("int", 7, [5, 7, 9]),
    ("text-own-id", "7", [5, 7, 9]),
    ("text-session-id", 7, [5, "7", 9]),
    ("only-own", 7, [7]),
]


@pytest.mark.parametrize("own_id, session_ids", [case[1:] for case in OWN_IDS], ids=[case[0] for case in OWN_IDS])
def test_own_session_is_never_a_victim(own_id, session_ids):
    # A policy that matches anything, with protect switched off.
    policy = parse_policy({"rules": [{"users": ["*"]}], "protect": {"superusers": False}})
    sessions = [session(i) for i in session_ids]
    result = plan(sessions, policy, own_id=own_id)
    assert "7" not in [str(i) for i in ids(result.victims)]
    assert "7" not in [str(i) for i in ids(result.not_ended)]
    assert result.seen == len(session_ids) - 1
    assert len(result.victims) == len(session_ids) - 1


def test_without_own_id_every_session_counts():
    policy = parse_policy({"rules": [{"users": ["*"]}]})
    assert plan([session(7), session(8)], policy).seen == 2


# (id, limits, victims, non-victims, expected fragment of limit_error or None)
LIMITS = [
    ("terminations-at", {"max_terminations": 3}, 3, 10, None),
    (
        "terminations-above",
        {"max_terminations": 3},
        4,
        10,
        "would end 4 of 14 client sessions (28.6%), above limits.max_terminations 3",
    ),
    ("terminations-zero-none", {"max_terminations": 0}, 0, 5, None),
    ("terminations-zero-one", {"max_terminations": 0}, 1, 5, "above limits.max_terminations 0"),
    ("fraction-at", {"max_fraction": 0.5}, 5, 5, None),
    (
        "fraction-above",
        {"max_fraction": 0.5},
        6,
        4,
        "would end 6 of 10 client sessions (60%), above limits.max_fraction 0.5",
    ),
    ("fraction-decimal-at", {"max_fraction": 0.3}, 3, 7, None),
    ("fraction-decimal-above", {"max_fraction": 0.3}, 4, 6, "above limits.max_fraction 0.3"),
    # Compared exactly as written: a third is (just) above 0.3333333333333333, although the floats are equal.
    (
        "fraction-third-exact",
        {"max_fraction": "0.3333333333333333"},
        1,
        2,
        "above limits.max_fraction 0.3333333333333333",
    ),
    ("fraction-one", {"max_fraction": 1}, 4, 0, None),
    ("fraction-all-but-just-above", {"max_fraction": 0.99}, 100, 0, "(100%), above limits.max_fraction 0.99"),
    ("fraction-large-fleet-just-above", {"max_fraction": 0.5}, 501, 499, "(50.1%)"),
    ("no-sessions", {"max_fraction": 0.1, "max_terminations": 0}, 0, 0, None),
    (
        "both",
        {"max_fraction": 0.5, "max_terminations": 2},
        3,
        1,
        "above limits.max_terminations 2 and above limits.max_fraction 0.5",
    ),
    # A policy without limits gets the defaults: at most 100 victims, at most 90% of the client sessions.
    ("no-limits-all", {}, 50, 0, "above limits.max_fraction 0.9 (the default: the policy sets none)"),
    ("no-limits-at-fraction", {}, 9, 1, None),
    (
        "no-limits-above-fraction",
        {},
        10,
        1,
        "would end 10 of 11 client sessions (90.9%), above limits.max_fraction 0.9",
    ),
    ("no-limits-at-count", {}, 100, 100, None),
    (
        "no-limits-above-count",
        {},
        101,
        100,
        "would end 101 of 201 client sessions (50.2%), above limits.max_terminations 100 (the default: the policy "
        "sets none):",
    ),
    (
        "explicit-count-default-fraction",
        {"max_terminations": 500},
        101,
        1,
        "above limits.max_fraction 0.9 (the default",
    ),
    ("lifted", {"max_terminations": "unlimited", "max_fraction": "unlimited"}, 500, 0, None),
    ("lifted-count-only", {"max_terminations": "unlimited"}, 500, 0, "above limits.max_fraction 0.9"),
    ("one-session", {}, 1, 0, "would end 1 of 1 client sessions (100%), above limits.max_fraction 0.9"),
]


@pytest.mark.parametrize(
    "limits, victims, others, expected", [case[1:] for case in LIMITS], ids=[case[0] for case in LIMITS]
)
def test_limits(limits, victims, others, expected):
    policy = parse_policy({"name": "nightly-sweep", "rules": [{"states": ["idle"]}], "limits": limits})
    sessions = [session(i) for i in range(victims)] + [session(1000 + i, state="active") for i in range(others)]
    result = plan(sessions, policy)
    # Victims are listed either way: the report shows what would have been ended.
    assert len(result.victims) == victims
    if expected is None:
        assert result.limit_error is None
        assert result.ok
    else:
        assert result.limit_error is not None and expected in result.limit_error
        assert result.limit_error.startswith("policy 'nightly-sweep' would end ")
        assert result.limit_error.endswith(
            ": nothing was ended (check the rules; if this many is intended, raise the limit in policy.limits or set "
            "it to unlimited)"
        )
        assert not result.ok


def test_limit_message_exactly():
    policy = parse_policy({"name": "nightly-sweep", "rules": [{"states": ["idle"]}], "limits": {"max_fraction": 0.5}})
    sessions = [session(i) for i in range(12)] + [session(100 + i, state="active") for i in range(8)]
    assert plan(sessions, policy).limit_error == (
        "policy 'nightly-sweep' would end 12 of 20 client sessions (60%), above limits.max_fraction 0.5: "
        "nothing was ended (check the rules; if this many is intended, raise the limit in policy.limits or set it "
        "to unlimited)"
    )
    policy = parse_policy({"name": "nightly-sweep", "rules": [{"states": ["idle"]}]})
    assert plan([session(i) for i in range(101)], policy).limit_error == (
        "policy 'nightly-sweep' would end 101 of 101 client sessions (100%), "
        "above limits.max_terminations 100 (the default: the policy sets none) "
        "and above limits.max_fraction 0.9 (the default: the policy sets none): "
        "nothing was ended (check the rules; if this many is intended, raise the limit in policy.limits or set it "
        "to unlimited)"
    )


def test_protected_sessions_do_not_count_against_limits():
    policy = parse_policy(
        {
            "rules": [{"states": ["idle"]}],
            "protect": {"users": ["keep"]},
            "limits": {"max_fraction": 0.5, "max_terminations": 5},
        }
    )
    sessions = [session(i) for i in range(5)] + [session(100 + i, user="keep") for i in range(5)]
    result = plan(sessions, policy)
    assert (len(result.victims), len(result.not_ended), result.seen, result.limit_error) == (5, 5, 10, None)


def test_own_session_does_not_count_against_limits():
    policy = parse_policy({"rules": [{"states": ["idle"]}], "limits": {"max_fraction": 0.5}})
    # Our own idle connection neither counts as seen nor as a victim: 2 of 4 is at the limit.
    sessions = [session(1), session(2), session(3, state="active"), session(4, state="active"), session(99)]
    assert plan(sessions, policy, own_id=99).limit_error is None
    assert plan(sessions, policy).limit_error is not None


def test_summary_and_to_dict():
    sessions = [
        session(1),
        session(2),
        session(3, state="active", query_seconds=9000.0),
        session(4, user="backup_1"),
        session(5, idle_seconds=1.0),
    ]
    result = plan(sessions, parse_policy(SWEEP))
    assert result.summary() == {
        "policy": "nightly-sweep",
        "seen": 5,
        "matched": 4,
        "victims": 3,
        "protected": 1,
        "by_rule": {"ghost-idle": {"victims": 2, "protected": 1}, "runaway-query": {"victims": 1, "protected": 0}},
        "by_action": {"terminate": 2, "cancel": 1},
        "limit_error": None,
        "limits": {"max_terminations": 100, "max_fraction": 0.9, "defaults": ["max_terminations", "max_fraction"]},
    }
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert [v["session"]["id"] for v in data["victims"]] == [1, 2, 3]
    assert data["not_ended"][0]["detail"] == "protect.users matches 'backup_*'"
    assert data["summary"] == result.summary()


def test_hostile_session_fields_are_just_data():
    policy = parse_policy({"rules": [{"users": ["O'Brien; DROP ROLE x; --"]}, {"applications": ["%s\n*"]}]})
    sessions = [
        session(1, user="O'Brien; DROP ROLE x; --"),
        session(2, user="O'Brien"),
        session(3, application="%s\nmore"),
        session(4, application="%s"),
    ]
    assert ids(plan(sessions, policy).victims) == [1, 3]


# --------------------------------------------------------------------------- bounded matching (issue 8)

EVIL = {"name": "evil", "rules": [{"name": "plain", "states": ["idle"]}, {"name": "scan", "query_matches": "(a+)+$"}]}
EVIL_QUERY = "SELECT '" + "a" * 40 + "!'"

# Runs a planning pass in a fresh interpreter, so that a hang fails the test (timeout)
# instead of hanging the suite. Prints the matcher child's pid first, then the outcome.
HOSTILE_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy, PolicyError
real_fork = os.fork
def fork():
    pid = real_fork()
    if pid:
        print("child", pid, flush=True)
    return pid
os.fork = fork
policy = parse_policy(json.loads(sys.argv[2]))
sessions = [{"id": 7, "state": "active", "query": sys.argv[3]}, {"id": 8, "state": "idle", "query": "SELECT 1"}]
try:
    _planner.plan(sessions, policy, match_deadline=float(sys.argv[4]))
except PolicyError as exc:
    print("error", json.dumps({"field": exc.field, "message": str(exc), "type": type(exc).__name__}), flush=True)
else:
    print("planned", flush=True)
"""


def run_hostile(deadline):
    return subprocess.Popen(
        [sys.executable, "-c", HOSTILE_SCRIPT, COLLECTIONS, json.dumps(EVIL), EVIL_QUERY, str(deadline)],
        stdout=subprocess.PIPE,
        text=True,
    )


def gone(pid):
    """True when the process no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_catastrophic_pattern_fails_the_host_naming_the_field_and_leaves_no_process():
    # Before: re.search('(a+)+$', "SELECT 'aaaa...(40)...!'") never returned.
    process = run_hostile(deadline=0.5)
    try:
        out = process.communicate(timeout=60)[0]
    finally:
        process.kill()
    lines = out.splitlines()
    child = int(lines[0].split()[1])
    kind, payload = lines[1].split(" ", 1)
    assert kind == "error"
    error = json.loads(payload)
    assert error["type"] == "MatchTimeout"
    assert error["field"] == "policy.rules[1].query_matches"
    assert error["message"].startswith(
        "policy.rules[1].query_matches: matching '(a+)+$' against this host's sessions "
        "did not finish within 0.5 seconds (stuck on session 7, 1 of 2)"
    )
    assert "Nothing was ended" in error["message"]
    assert gone(child)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to see the orphan")
def test_matcher_child_dies_by_itself_when_its_parent_is_killed():
    # Before: the module process kept a CPU busy after ansible-playbook was killed.
    process = run_hostile(deadline=1)
    child = int(process.stdout.readline().split()[1])
    process.kill()  # SIGKILL: the parent cannot clean up
    process.wait(timeout=30)
    deadline = time.monotonic() + 30  # the child's alarm() fires one second after its deadline
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(child)


def test_the_bounded_matcher_is_used_only_when_needed(monkeypatch):
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(_matching.os, "fork", counting_fork)
    sessions = [session(1, query="SELECT 2"), session(2, state="active", query_seconds=9000.0)]
    plain = plan(sessions, parse_policy(SWEEP))
    assert forks == []
    assert not parse_policy(SWEEP).needs_bounded_matching
    with_regex = dict(SWEEP, rules=SWEEP["rules"] + [{"name": "twos", "query_matches": "2$"}])
    assert parse_policy(with_regex).needs_bounded_matching
    bounded = plan(sessions, parse_policy(with_regex))
    assert forks == [1]
    assert ids(plain.victims) == [1, 2]
    assert [(v["session"]["id"], v["rule"]) for v in bounded.victims] == [(1, "ghost-idle"), (2, "runaway-query")]
    assert plan([], parse_policy(with_regex)).seen == 0
    assert forks == [1]  # no sessions, nothing to match


def test_bounded_matching_gives_the_in_process_answer():
    policy = parse_policy(
        {
            "rules": [
                {"name": "selects", "query_matches": "^SELECT", "except": {"query_matches": "pg_sleep"}},
                {"name": "idle", "states": ["idle"], "idle_longer_than": 100},
            ],
            "protect": {"users": ["backup_*"], "client_addresses": ["10.9.0.0/16"]},
        }
    )
    sessions = [
        session(n, query=query, user=user, client_addr=addr, idle_seconds=idle)
        for n, (query, user, addr, idle) in enumerate(
            [
                ("SELECT 1", "app", "10.2.3.4", 1.0),
                ("SELECT pg_sleep(5)", "app", "10.2.3.4", 1.0),
                ("UPDATE t", "app", "10.2.3.4", 500.0),
                ("SELECT 2", "backup_7", "10.2.3.4", 1.0),
                (None, "app", "10.9.1.1", 500.0),
                ("UPDATE t", "app", "not-an-ip", 500.0),
            ]
        )
    ]
    ordered = sorted(sessions, key=_planner._order)
    assert _matching._decide_bounded(policy, ordered, 10) == _matching._decide(policy, ordered)
    result = plan(sessions, policy)
    assert [(v["session"]["id"], v["rule"]) for v in result.victims] == [(0, "selects"), (2, "idle")]
    assert [(e["session"]["id"], e["detail"]) for e in result.not_ended] == [
        (3, "protect.users matches 'backup_*'"),
        (4, "protect.client_addresses matches '10.9.0.0/16'"),
        (5, "client address 'not-an-ip' is not an IP address, protect.client_addresses cannot rule it out"),
    ]


def test_a_failure_inside_the_matcher_child_is_reported():
    policy = parse_policy({"rules": [{"query_matches": "x", "idle_longer_than": 5}]})
    with pytest.raises(RuntimeError) as caught:
        plan([session(1, query="x", idle_seconds="soon")], policy)  # a str where a number belongs
    assert "matching the policy failed: TypeError" in str(caught.value)


def test_match_timeout_is_both_a_policy_and_a_session_error():
    # The runner fails the host on a SessionError; callers that name fields read PolicyError.field.
    assert issubclass(MatchTimeout, PolicyError)
    assert issubclass(MatchTimeout, SessionError)


def test_a_protect_glob_is_named_when_it_is_what_overran():
    policy = parse_policy({"rules": [{"states": ["idle"]}], "protect": {"users": ["backup_*"]}})
    assert _matching._slow_field(policy, -1)[:3] == ("policy.protect", None, "the protect globs")
    assert _matching._slow_field(policy, 0)[:3] == ("policy.rules[0]", "rule-0", "the globs of rule 'rule-0'")
    except_only = parse_policy({"rules": [{"states": ["idle"], "except": {"query_matches": "x+"}}]})
    assert _matching._slow_field(except_only, 0)[:3] == ("policy.rules[0].except.query_matches", "x+", "'x+'")


@pytest.mark.skipif(sys.version_info >= (3, 9), reason="fnmatch backtracks only before Python 3.9")
def test_multi_star_globs_are_bounded_before_python_3_9():
    policy = parse_policy({"rules": [{"states": ["idle"]}], "protect": {"applications": ["*a" * 12 + "b"]}})
    assert policy.needs_bounded_matching
    with pytest.raises(MatchTimeout) as caught:
        plan([session(1, application="a" * 60)], policy, match_deadline=0.5)
    assert caught.value.field == "policy.protect"
    assert "fewer *" in str(caught.value)


def test_limit_message_cuts_a_long_policy_name():
    policy = parse_policy(
        {"name": "n" * 200, "rules": [{"states": ["idle"]}], "limits": {"max_terminations": 0, "max_fraction": 1}}
    )
    result = plan([session(1)], policy)
    assert len(result.limit_error) < 330
    assert "(200 characters)" in result.limit_error
