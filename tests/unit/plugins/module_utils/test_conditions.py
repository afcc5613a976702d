# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rule's conditions and the policy's protect (module_utils/_conditions.py): how each reads its
value and matches a session record, hostile input matched literally, the lock conditions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _conditions
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import CONDITION_KEYS, MAX_PATTERN_LENGTH
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from test_policy import GOOD_RULE, one_rule, session, with_rule

# (id, rule, session fields, expected match)
CONDITIONS = [
    ("states-yes", {"states": ["idle", "active"]}, {"state": "active"}, True),
    ("states-no", {"states": ["idle"]}, {"state": "idle_in_transaction"}, False),
    ("states-single-string", {"states": "idle_in_transaction_aborted"}, {"state": "idle_in_transaction_aborted"}, True),
    ("users-glob-yes", {"users": ["app*"]}, {"user": "application_user"}, True),
    ("users-glob-no", {"users": ["app*"]}, {"user": "batch"}, False),
    ("users-case-sensitive", {"users": ["App*"]}, {"user": "app"}, False),
    ("users-single-string", {"users": "bob"}, {"user": "bob"}, True),
    ("users-numeric-name", {"users": [1234]}, {"user": "1234"}, True),
    ("users-question-mark", {"users": ["app?"]}, {"user": "app1"}, True),
    ("users-question-mark-one-char", {"users": ["app?"]}, {"user": "app12"}, False),
    ("users-seq-no", {"users": ["app[12]"]}, {"user": "app3"}, False),
    ("users-negated-seq", {"users": ["[!a]*"]}, {"user": "bob"}, True),
    ("users-literal-bracket", {"users": ["[[]x]"]}, {"user": "[x]"}, True),
    ("users-none-star", {"users": ["*"]}, {"user": None}, True),
    ("users-none-prefix", {"users": ["app*"]}, {"user": None}, False),
    ("users-any-of-list", {"users": ["x", "y", "app"]}, {"user": "app"}, True),
    ("databases-yes", {"databases": ["shop*"]}, {"database": "shop_eu"}, True),
    ("databases-no", {"databases": ["shop"]}, {"database": "shop_eu"}, False),
    ("databases-none", {"databases": ["shop"]}, {"database": None}, False),
    ("applications-yes", {"applications": ["psql"]}, {"application": "psql"}, True),
    ("applications-no", {"applications": ["psql"]}, {"application": "psql2"}, False),
    ("applications-empty-string-glob-matches-none", {"applications": [""]}, {"application": None}, True),
    ("cidr-yes", {"client_addresses": ["10.0.0.0/8"]}, {"client_addr": "10.2.3.4"}, True),
    ("cidr-no", {"client_addresses": ["10.0.0.0/8"]}, {"client_addr": "192.168.1.5"}, False),
    ("cidr-single-ip", {"client_addresses": "10.2.3.4"}, {"client_addr": "10.2.3.4"}, True),
    ("cidr-single-ip-other", {"client_addresses": "10.2.3.4"}, {"client_addr": "10.2.3.5"}, False),
    ("cidr-host-bits", {"client_addresses": ["10.2.3.99/24"]}, {"client_addr": "10.2.3.4"}, True),
    ("cidr-none-is-not-in-any-network", {"client_addresses": ["0.0.0.0/0", "::/0"]}, {"client_addr": None}, False),
    ("local-none", {"client_addresses": ["local"]}, {"client_addr": None}, True),
    ("local-empty-string", {"client_addresses": ["local"]}, {"client_addr": ""}, True),
    ("local-ip", {"client_addresses": ["local"]}, {"client_addr": "127.0.0.1"}, False),
    ("local-or-cidr", {"client_addresses": ["local", "10.0.0.0/8"]}, {"client_addr": "10.9.9.9"}, True),
    ("ipv6", {"client_addresses": ["::/0"]}, {"client_addr": "2001:db8::1"}, True),
    ("ipv6-not-in-ipv4-world", {"client_addresses": ["0.0.0.0/0"]}, {"client_addr": "::1"}, False),
    ("ipv4-not-in-ipv6-world", {"client_addresses": ["::/0"]}, {"client_addr": "10.2.3.4"}, False),
    ("ipv4-mapped", {"client_addresses": ["10.0.0.0/8"]}, {"client_addr": "::ffff:10.2.3.4"}, True),
    ("ipv6-zone", {"client_addresses": ["fe80::/10"]}, {"client_addr": "fe80::1%eth0"}, True),
    ("addr-with-prefix", {"client_addresses": ["10.0.0.0/8"]}, {"client_addr": "10.2.3.4/32"}, True),
    ("addr-not-an-ip", {"client_addresses": ["0.0.0.0/0"]}, {"client_addr": "localhost"}, False),
    ("idle-above", {"idle_longer_than": "30m"}, {"idle_seconds": 1800.5}, True),
    ("idle-at-threshold", {"idle_longer_than": "30m"}, {"idle_seconds": 1800}, False),
    ("idle-none", {"idle_longer_than": 0}, {"idle_seconds": None}, False),
    ("idle-any-state", {"idle_longer_than": "1m"}, {"state": "active", "idle_seconds": 61}, True),
    ("running-above", {"running_longer_than": "2h"}, {"state": "active", "query_seconds": 7201}, True),
    ("running-at-threshold", {"running_longer_than": "2h"}, {"state": "active", "query_seconds": 7200}, False),
    ("running-not-active", {"running_longer_than": "2h"}, {"state": "idle", "query_seconds": 9999}, False),
    ("running-none", {"running_longer_than": 0}, {"state": "active", "query_seconds": None}, False),
    ("transaction-above", {"transaction_longer_than": "5m"}, {"transaction_seconds": 301}, True),
    ("transaction-at-threshold", {"transaction_longer_than": "5m"}, {"transaction_seconds": 300}, False),
    ("transaction-none", {"transaction_longer_than": 0}, {"transaction_seconds": None}, False),
    ("connected-above", {"connected_longer_than": "1d"}, {"connected_seconds": 86401}, True),
    ("connected-at-threshold", {"connected_longer_than": "1d"}, {"connected_seconds": 86400}, False),
    ("connected-none", {"connected_longer_than": 0}, {"connected_seconds": None}, False),
    ("query-yes", {"query_matches": "pg_sleep\\("}, {"query": "SELECT pg_sleep(600)"}, True),
    ("query-search-not-match", {"query_matches": "sleep"}, {"query": "SELECT pg_sleep(600)"}, True),
    ("query-no", {"query_matches": "^UPDATE"}, {"query": "SELECT 1"}, False),
    ("query-case-sensitive", {"query_matches": "select"}, {"query": "SELECT 1"}, False),
    ("query-inline-flag", {"query_matches": "(?i)select"}, {"query": "SELECT 1"}, True),
    ("query-none", {"query_matches": ".*"}, {"query": None}, False),
    (
        "all-of-yes",
        {"states": ["idle"], "users": ["app*"], "idle_longer_than": 60},
        {"user": "app", "idle_seconds": 61},
        True,
    ),
    (
        "all-of-one-fails",
        {"states": ["idle"], "users": ["app*"], "idle_longer_than": 60},
        {"user": "batch", "idle_seconds": 61},
        False,
    ),
    (
        "all-of-other-fails",
        {"states": ["idle"], "users": ["app*"], "idle_longer_than": 60},
        {"user": "app", "idle_seconds": 59},
        False,
    ),
    # except: the docs/architecture.md example
    (
        "foreign-outside",
        {"client_addresses": ["0.0.0.0/0", "::/0"], "except": {"client_addresses": ["10.0.0.0/8"]}},
        {"client_addr": "8.8.8.8"},
        True,
    ),
    (
        "foreign-inside",
        {"client_addresses": ["0.0.0.0/0", "::/0"], "except": {"client_addresses": ["10.0.0.0/8"]}},
        {"client_addr": "10.1.1.1"},
        False,
    ),
    (
        "foreign-ipv6",
        {"client_addresses": ["0.0.0.0/0", "::/0"], "except": {"client_addresses": ["10.0.0.0/8"]}},
        {"client_addr": "2001:db8::1"},
        True,
    ),
    (
        "foreign-local",
        {"client_addresses": ["0.0.0.0/0", "::/0"], "except": {"client_addresses": ["10.0.0.0/8"]}},
        {"client_addr": None},
        False,
    ),
    # except needs ALL its conditions to exclude
    (
        "except-all-hold",
        {"states": ["idle"], "except": {"users": ["app"], "databases": ["shop"]}},
        {"user": "app", "database": "shop"},
        False,
    ),
    (
        "except-one-fails",
        {"states": ["idle"], "except": {"users": ["app"], "databases": ["shop"]}},
        {"user": "app", "database": "crm"},
        True,
    ),
    ("except-none-field", {"states": ["idle"], "except": {"query_matches": "^VACUUM"}}, {"query": None}, True),
    ("except-duration", {"states": ["idle"], "except": {"idle_longer_than": "1h"}}, {"idle_seconds": 3601}, False),
    ("except-not-reached", {"states": ["idle"], "except": {"idle_longer_than": "1h"}}, {"idle_seconds": 3600}, True),
    (
        "except-only-when-rule-matches",
        {"states": ["active"], "except": {"users": ["nobody"]}},
        {"state": "idle"},
        False,
    ),
]


@pytest.mark.parametrize(
    "rule, fields, expected", [case[1:] for case in CONDITIONS], ids=[case[0] for case in CONDITIONS]
)
def test_rule_conditions(rule, fields, expected):
    policy = one_rule(**copy.deepcopy(rule))
    assert policy.rules[0].matches(session(**fields)) is expected
    assert (policy.match(session(**fields)) is policy.rules[0]) is expected


# Globs and regexes see hostile text as plain characters: (id, glob, field value, expected)
HOSTILE = [
    ("quote", "O'Brien", "O'Brien", True),
    ("quote-other", "O'Brien", "OBrien", False),
    ("double-quote", 'say "hi"*', 'say "hi" there', True),
    ("percent-s", "%s", "%s", True),
    ("percent-s-is-not-a-wildcard", "%s", "anything", False),
    ("percent-is-not-like", "app%", "app_user", False),
    ("underscore-is-not-like", "app_user", "appXuser", False),
    ("semicolon", "x; DROP TABLE t; --", "x; DROP TABLE t; --", True),
    ("newline", "line1\nline2", "line1\nline2", True),
    ("star-spans-newline", "line1*", "line1\nline2", True),
    ("no-trailing-newline-slack", "x", "x\n", False),
    ("backslash", "a\\b", "a\\b", True),
    ("regex-chars-literal", "a.b+(c)", "a.b+(c)", True),
    ("regex-dot-not-wildcard", "a.b", "axb", False),
    ("dollar", "$user", "$user", True),
]


@pytest.mark.parametrize("glob, value, expected", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_strings_match_literally(glob, value, expected):
    for condition, field in (("users", "user"), ("databases", "database"), ("applications", "application")):
        policy = one_rule(**{condition: [glob]})
        assert policy.rules[0].matches(session(**{field: value})) is expected, condition
        protect = parse_policy({"rules": [GOOD_RULE], "protect": {condition: [glob]}}).protect
        assert (protect.protects(session(**{field: value})) is not None) is expected, condition


def test_hostile_query_text_is_searched_literally():
    policy = one_rule(query_matches="DROP TABLE")
    assert policy.rules[0].matches(session(query="'; DROP TABLE users; --\n%s"))
    assert not policy.rules[0].matches(session(query="'; drop table users; --"))


# (id, protect, session fields, expected reason)
PROTECT = [
    ("users", {"users": ["replicator", "backup_*"]}, {"user": "backup_nightly"}, "protect.users matches 'backup_*'"),
    ("users-no", {"users": ["replicator", "backup_*"]}, {"user": "app"}, None),
    ("users-single-string", {"users": "app"}, {"user": "app"}, "protect.users matches 'app'"),
    (
        "applications",
        {"applications": ["pg_dump*"]},
        {"application": "pg_dump 16"},
        "protect.applications matches 'pg_dump*'",
    ),
    ("applications-none-field", {"applications": ["pg_dump*"]}, {"application": None}, None),
    ("databases", {"databases": ["shop"]}, {"database": "shop"}, "protect.databases matches 'shop'"),
    ("databases-empty-list", {"databases": []}, {"database": "shop"}, None),
    (
        "cidr",
        {"client_addresses": ["10.1.0.0/16"]},
        {"client_addr": "10.1.200.3"},
        "protect.client_addresses matches '10.1.0.0/16'",
    ),
    ("cidr-no", {"client_addresses": ["10.1.0.0/16"]}, {"client_addr": "10.2.3.4"}, None),
    (
        "cidr-ipv4-mapped",
        {"client_addresses": ["10.1.0.0/16"]},
        {"client_addr": "::ffff:10.1.0.7"},
        "protect.client_addresses matches '10.1.0.0/16'",
    ),
    ("local", {"client_addresses": ["local"]}, {"client_addr": None}, "protect.client_addresses matches 'local'"),
    ("local-no", {"client_addresses": ["local"]}, {"client_addr": "10.2.3.4"}, None),
    ("cidr-does-not-cover-local", {"client_addresses": ["0.0.0.0/0"]}, {"client_addr": None}, None),
    (
        "unreadable-address-fails-closed",
        {"client_addresses": ["10.1.0.0/16"]},
        {"client_addr": "db-host.example"},
        "client address 'db-host.example' is not an IP address, protect.client_addresses cannot rule it out",
    ),
    ("superuser-default", {}, {"superuser": True}, "superuser"),
    ("superuser-true", {"superusers": True}, {"superuser": True}, "superuser"),
    ("superuser-false", {"superusers": False}, {"superuser": True}, None),
    ("superuser-false-text", {"superusers": "false"}, {"superuser": True}, None),
    ("not-superuser", {"superusers": True}, {"superuser": False}, None),
    ("superuser-missing-field", {}, {"superuser": None}, None),
    (
        "superuser-false-still-protects-users",
        {"superusers": False, "users": ["postgres"]},
        {"user": "postgres", "superuser": True},
        "protect.users matches 'postgres'",
    ),
]


@pytest.mark.parametrize("protect, fields, expected", [case[1:] for case in PROTECT], ids=[case[0] for case in PROTECT])
def test_protect(protect, fields, expected):
    policy = parse_policy({"rules": [GOOD_RULE], "protect": copy.deepcopy(protect)})
    assert policy.protect.protects(session(**fields)) == expected


def test_no_protect_section_still_protects_superusers():
    policy = parse_policy({"rules": [GOOD_RULE]})
    assert policy.protect.protects(session(superuser=True)) == "superuser"
    assert policy.protect.protects(session()) is None


@pytest.mark.parametrize(
    "pattern, fragment",
    [
        ("a{99999999999}", "OverflowError"),
        ("(" * 499 + ")" * 499, "regular expression"),  # RecursionError at most stack depths
        ("(" * 3000 + "a" + ")" * 3000, "longer than 1000 characters"),
        ("x" * (MAX_PATTERN_LENGTH + 1), "longer than 1000 characters"),
        ("(?P<n>a)(?P<n>b)", "invalid regular expression"),
        ("[", "invalid regular expression"),
    ],
    ids=["overflow", "recursion", "3000-groups", "too-long", "re-error", "unterminated"],
)
def test_any_regex_compile_failure_is_a_policy_error(pattern, fragment):
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_rule(query_matches=pattern))
    assert caught.value.field == "policy.rules[0].query_matches"
    assert fragment in str(caught.value)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    "exception", [RecursionError("maximum recursion depth exceeded"), MemoryError(), IndexError("x")]
)
def test_a_compile_that_raises_anything_is_a_policy_error(monkeypatch, exception):
    def failing_compile(pattern):
        raise exception

    monkeypatch.setattr(_conditions.re, "compile", failing_compile)
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_rule(query_matches="a+"))
    assert caught.value.field == "policy.rules[0].query_matches"
    assert f"cannot be compiled ({type(exception).__name__}" in str(caught.value)


def test_longest_pattern_is_accepted():
    assert parse_policy(with_rule(query_matches="x" * MAX_PATTERN_LENGTH)).rules[0].conditions_used


# A waiter (B waits on A for 42 s), a root blocker (A: 3 behind it, longest 42 s), a
# session in the middle of a chain (waits itself, so never a root) and one that knows
# nothing of locks (a driver without lock fields).
WAITER = {"blocked_by": [7], "lock_wait_seconds": 42.0, "blocking": 0, "blocking_seconds": None}


ROOT = {"blocked_by": [], "lock_wait_seconds": None, "blocking": 3, "blocking_seconds": 42.0}


MIDDLE = {"blocked_by": [7], "lock_wait_seconds": 42.0, "blocking": 2, "blocking_seconds": 30.0}


FREE = {"blocked_by": [], "lock_wait_seconds": None, "blocking": 0, "blocking_seconds": None}


UNAWARE = {}


LOCK_MATCHES = [
    ("waiting-longer", {"waiting_longer_than": "30s"}, WAITER, True),
    ("waiting-strict", {"waiting_longer_than": 42}, WAITER, False),
    ("waiting-not-waiting", {"waiting_longer_than": 0}, ROOT, False),
    ("waiting-unaware-record", {"waiting_longer_than": 0}, UNAWARE, False),
    ("waiting-middle-of-chain", {"waiting_longer_than": "10s"}, MIDDLE, True),
    ("blocking-longer-root", {"blocking_longer_than": "30s"}, ROOT, True),
    ("blocking-longer-strict", {"blocking_longer_than": 42}, ROOT, False),
    ("blocking-longer-never-the-waiter", {"blocking_longer_than": 0}, WAITER, False),
    ("blocking-longer-never-the-middle", {"blocking_longer_than": 0}, MIDDLE, False),
    ("blocking-longer-free", {"blocking_longer_than": 0}, FREE, False),
    ("blocking-longer-unaware-record", {"blocking_longer_than": 0}, UNAWARE, False),
    (
        "blocking-longer-none-seconds",
        {"blocking_longer_than": 0},
        dict(ROOT, blocking_seconds=None),
        False,
    ),
    ("blocking-at-least-reached", {"blocking_at_least": 3}, ROOT, True),
    ("blocking-at-least-above", {"blocking_at_least": 4}, ROOT, False),
    ("blocking-at-least-one", {"blocking_at_least": 1}, ROOT, True),
    ("blocking-at-least-never-the-middle", {"blocking_at_least": 1}, MIDDLE, False),
    ("blocking-at-least-free", {"blocking_at_least": 1}, FREE, False),
    ("blocking-at-least-unaware", {"blocking_at_least": 1}, UNAWARE, False),
    ("blocking-missing-blocked-by", {"blocking_at_least": 1}, {"blocking": 2}, True),
    # AND-ed with the other conditions, as every condition is
    ("and-state-holds", {"states": ["idle_in_transaction"], "blocking_at_least": 2}, ROOT, True),
    ("and-state-fails", {"states": ["active"], "blocking_at_least": 2}, ROOT, False),
    ("and-both-lock-conditions", {"blocking_at_least": 3, "blocking_longer_than": "40s"}, ROOT, True),
    ("and-one-lock-condition-fails", {"blocking_at_least": 4, "blocking_longer_than": "40s"}, ROOT, False),
    ("and-user-fails", {"users": ["batch"], "waiting_longer_than": "1s"}, WAITER, False),
    # except: the same keys, under except
    ("except-waiting", {"states": ["active"], "except": {"waiting_longer_than": "30s"}}, WAITER, False),
    ("except-waiting-short", {"states": ["active"], "except": {"waiting_longer_than": "1m"}}, WAITER, True),
    ("except-root-blockers", {"states": ["idle_in_transaction"], "except": {"blocking_at_least": 1}}, ROOT, False),
    ("except-root-blockers-free", {"states": ["idle_in_transaction"], "except": {"blocking_at_least": 1}}, FREE, True),
    ("except-blocking-longer", {"states": ["idle_in_transaction"], "except": {"blocking_longer_than": 0}}, ROOT, False),
]


@pytest.mark.parametrize(
    "rule, fields, expected", [case[1:] for case in LOCK_MATCHES], ids=[c[0] for c in LOCK_MATCHES]
)
def test_lock_conditions(rule, fields, expected):
    state = "active" if fields is WAITER or fields is MIDDLE else "idle_in_transaction"
    record = session(state=state, **{key: copy.deepcopy(value) for key, value in fields.items()})
    policy = one_rule(**copy.deepcopy(rule))
    assert policy.rules[0].matches(record) is expected


def test_protect_wins_over_lock_conditions():
    policy = parse_policy({"rules": [{"blocking_at_least": 1}], "protect": {"users": ["app"]}})
    record = session(state="idle_in_transaction", **ROOT)
    assert policy.rules[0].matches(record)
    assert policy.protect.protects(record) == "protect.users matches 'app'"


def test_lock_conditions_parse_and_normalize():
    policy = parse_policy(
        {
            "rules": [
                {
                    "name": "r",
                    "waiting_longer_than": "1m",
                    "blocking_longer_than": 30.0,
                    "blocking_at_least": " 2 ",
                    "except": {"blocking_at_least": 5, "waiting_longer_than": "1h"},
                }
            ]
        }
    )
    rule = policy.to_dict()["rules"][0]
    assert rule["waiting_longer_than"] == 60
    assert rule["blocking_longer_than"] == 30
    assert rule["blocking_at_least"] == 2
    assert rule["except"] == {"waiting_longer_than": 3600, "blocking_at_least": 5}
    assert {"waiting_longer_than", "blocking_longer_than", "blocking_at_least"} <= policy.conditions_used()
    assert {"waiting_longer_than", "blocking_longer_than", "blocking_at_least"} <= set(CONDITION_KEYS)
    assert not policy.needs_bounded_matching


def test_a_lock_condition_alone_is_a_rule():
    assert one_rule(blocking_at_least=1).rules[0].conditions.keys == frozenset(["blocking_at_least"])


INVALID_LOCK_CONDITIONS = [
    ("waiting-bad-duration", {"waiting_longer_than": "soon"}, "policy.rules[0].waiting_longer_than", "'soon'"),
    ("waiting-negative", {"waiting_longer_than": -1}, "policy.rules[0].waiting_longer_than", "negative"),
    ("waiting-fraction", {"waiting_longer_than": 1.5}, "policy.rules[0].waiting_longer_than", "fractions"),
    ("waiting-too-long", {"waiting_longer_than": "400d"}, "policy.rules[0].waiting_longer_than", "maximum"),
    ("blocking-longer-bad", {"blocking_longer_than": "1x"}, "policy.rules[0].blocking_longer_than", "'1x'"),
    ("blocking-longer-bool", {"blocking_longer_than": True}, "policy.rules[0].blocking_longer_than", "True"),
    ("at-least-zero", {"blocking_at_least": 0}, "policy.rules[0].blocking_at_least", "from 1 to 1000000, got 0"),
    ("at-least-negative", {"blocking_at_least": -2}, "policy.rules[0].blocking_at_least", "got -2"),
    ("at-least-bool", {"blocking_at_least": True}, "policy.rules[0].blocking_at_least", "got True"),
    ("at-least-fraction", {"blocking_at_least": 2.5}, "policy.rules[0].blocking_at_least", "got 2.5"),
    ("at-least-text", {"blocking_at_least": "many"}, "policy.rules[0].blocking_at_least", "got 'many'"),
    ("at-least-duration", {"blocking_at_least": "30s"}, "policy.rules[0].blocking_at_least", "got '30s'"),
    ("at-least-huge", {"blocking_at_least": 10**7}, "policy.rules[0].blocking_at_least", "got 10000000"),
    ("at-least-list", {"blocking_at_least": [1]}, "policy.rules[0].blocking_at_least", "got [1]"),
    (
        "except-at-least-zero",
        {"states": ["idle"], "except": {"blocking_at_least": 0}},
        "policy.rules[0].except.blocking_at_least",
        "got 0",
    ),
    (
        "except-waiting-bad",
        {"states": ["idle"], "except": {"waiting_longer_than": "later"}},
        "policy.rules[0].except.waiting_longer_than",
        "'later'",
    ),
    ("unknown-lock-key", {"blocked_longer_than": "1s"}, "policy.rules[0].blocked_longer_than", "unknown key"),
]


@pytest.mark.parametrize(
    "rule, field, fragment",
    [case[1:] for case in INVALID_LOCK_CONDITIONS],
    ids=[case[0] for case in INVALID_LOCK_CONDITIONS],
)
def test_invalid_lock_conditions_name_field_and_value(rule, field, fragment):
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [rule]})
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ")
    assert fragment in str(caught.value)
