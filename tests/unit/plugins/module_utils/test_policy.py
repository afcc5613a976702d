# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _conditions, _policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import policy_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import CONDITION_KEYS, MAX_PATTERN_LENGTH
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import (
    MAX_DURATION,
    MAX_GRACE,
    parse_duration,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import MAX_POLICY_TEXT, parse_policy

COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(_policy.__file__), "..", "..", "..", "..", ".."))


def session(**overrides):
    """A normalized session record that no test rule matches unless told."""
    record = {
        "id": 100,
        "key": "100@2024-01-01T00:00:00+00:00",
        "user": "app",
        "database": "shop",
        "application": "web",
        "client_addr": "10.2.3.4",
        "state": "idle",
        "connected_at": "2024-01-01T00:00:00+00:00",
        "state_since": "2024-01-01T00:00:00+00:00",
        "connected_seconds": 100.0,
        "idle_seconds": 10.0,
        "query_seconds": None,
        "transaction_seconds": None,
        "query": "SELECT 1",
        "superuser": False,
        "backend_type": "client backend",
        "command": None,
    }
    record.update(overrides)
    return record


def one_rule(**rule):
    return parse_policy({"rules": [rule]})


# --------------------------------------------------------------------------- durations

DURATIONS_VALID = [
    (0, 0),
    (45, 45),
    ("0", 0),
    ("45", 45),
    ("45s", 45),
    ("30m", 1800),
    ("1h", 3600),
    ("1h30m", 5400),
    ("90m", 5400),
    ("2d", 172800),
    ("1d4s", 86404),
    ("1d2h3m4s", 93784),
    ("0s", 0),
    (" 30m ", 1800),
]


@pytest.mark.parametrize("value, seconds", DURATIONS_VALID)
def test_parse_duration_valid(value, seconds):
    assert parse_duration(value, "policy.grace") == seconds


DURATIONS_INVALID = [
    -1,
    "-5",
    "-5s",
    "",
    "   ",
    "5x",
    "1.5h",
    "1.5",
    "m30",
    "30m30m",
    "1m1h",
    "1h30",
    "30M",
    "h",
    "1 h",
    "٣",  # an Arabic-Indic digit: str.isdigit() says yes, we say no
    True,
    False,
    None,
    1.5,
    [30],
    {"m": 30},
]


@pytest.mark.parametrize("value", DURATIONS_INVALID)
def test_parse_duration_invalid_names_field_and_value(value):
    with pytest.raises(PolicyError) as caught:
        parse_duration(value, "policy.rules[0].idle_longer_than")
    error = caught.value
    assert error.field == "policy.rules[0].idle_longer_than"
    assert error.value == value
    message = str(error)
    assert message.startswith(f"policy.rules[0].idle_longer_than: invalid duration {value!r}")
    assert "use 45s, 30m, 1h30m, 2d or a whole number of seconds" in message


def test_duration_error_message_exactly():
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [{"idle_longer_than": "5x"}]})
    assert str(caught.value) == (
        "policy.rules[0].idle_longer_than: invalid duration '5x' (use 45s, 30m, 1h30m, 2d or a whole number of seconds)"
    )


# --------------------------------------------------------------------------- validation

GOOD_RULE = {"name": "ghost-idle", "states": ["idle"], "idle_longer_than": "30m"}


def with_rule(**changes):
    rule = dict(GOOD_RULE)
    rule.update(changes)
    return {"rules": [rule]}


def with_top(**changes):
    raw = {"rules": [dict(GOOD_RULE)]}
    raw.update(changes)
    return raw


# (id, raw policy, field, fragment of the message)
INVALID_POLICIES = [
    ("none", None, "policy", "a policy is required"),
    ("not-a-dict", "sweep", "policy", "expected a mapping"),
    ("unknown-top-key", with_top(frobnicate=1), "policy.frobnicate", "unknown key 'frobnicate' (allowed: name,"),
    ("name-not-str", with_top(name=["x"]), "policy.name", "expected a string, got ['x']"),
    ("rules-missing", {"name": "x"}, "policy.rules", "at least one rule is required"),
    ("rules-none", {"rules": None}, "policy.rules", "at least one rule is required"),
    ("rules-empty", {"rules": []}, "policy.rules", "at least one rule is required"),
    ("rules-not-list", {"rules": "ghost-idle"}, "policy.rules", "expected a list of rules, got 'ghost-idle'"),
    ("rule-not-dict", {"rules": ["ghost-idle"]}, "policy.rules[0]", "expected a mapping"),
    ("rule-unknown-key", with_rule(idle_longer="30m"), "policy.rules[0].idle_longer", "unknown key 'idle_longer'"),
    ("rule-no-condition", {"rules": [{"name": "all"}]}, "policy.rules[0]", "rule 'all' has no condition"),
    (
        "rule-only-none-conditions",
        {"rules": [{"name": "all", "users": None, "idle_longer_than": None, "except": None}]},
        "policy.rules[0]",
        "would match every session",
    ),
    ("rule-name-not-str", with_rule(name=7), "policy.rules[0].name", "expected a string, got 7"),
    (
        "duplicate-names",
        {"rules": [dict(GOOD_RULE), dict(GOOD_RULE)]},
        "policy.rules[1].name",
        "duplicate rule name 'ghost-idle' (also policy.rules[0])",
    ),
    (
        "duplicate-with-default-name",
        {"rules": [{"states": ["idle"]}, {"name": "rule-0", "states": ["active"]}]},
        "policy.rules[1].name",
        "duplicate rule name 'rule-0'",
    ),
    ("policy-action", with_top(action="kill"), "policy.action", "invalid action 'kill' (allowed: terminate, cancel,"),
    ("rule-action", with_rule(action="KILL"), "policy.rules[0].action", "invalid action 'KILL'"),
    ("grace", with_top(grace="5x"), "policy.grace", "invalid duration '5x'"),
    ("grace-negative", with_top(grace=-3), "policy.grace", "invalid duration -3"),
    ("rule-duration", with_rule(running_longer_than="1.5h"), "policy.rules[0].running_longer_than", "'1.5h'"),
    (
        "transaction-duration",
        with_rule(transaction_longer_than="m5"),
        "policy.rules[0].transaction_longer_than",
        "'m5'",
    ),
    ("connected-duration", with_rule(connected_longer_than=True), "policy.rules[0].connected_longer_than", "True"),
    (
        "state",
        with_rule(states=["idle", "sleeping"]),
        "policy.rules[0].states[1]",
        "invalid state 'sleeping' (allowed: active, idle,",
    ),
    (
        "state-pg-spelling",
        with_rule(states="idle in transaction"),
        "policy.rules[0].states[0]",
        "'idle in transaction'",
    ),
    ("states-empty", with_rule(states=[]), "policy.rules[0].states", "empty list: it would match nothing"),
    ("users-empty", with_rule(users=[]), "policy.rules[0].users", "empty list"),
    ("users-dict", with_rule(users={"bob": 1}), "policy.rules[0].users", "expected a list (or a single string)"),
    (
        "glob-unbalanced",
        with_rule(users=["app[12"]),
        "policy.rules[0].users[0]",
        "invalid glob 'app[12' (unbalanced '['",
    ),
    ("glob-unbalanced-later", with_rule(applications=["[ab]x[", "y"]), "policy.rules[0].applications[0]", "'[ab]x['"),
    ("glob-bracket-only", with_rule(databases=["a", "[]"]), "policy.rules[0].databases[1]", "invalid glob '[]'"),
    ("glob-not-str", with_rule(databases=[{"a": 1}]), "policy.rules[0].databases[0]", "expected a string"),
    ("glob-bool", with_rule(users=[True]), "policy.rules[0].users[0]", "expected a string, got True"),
    (
        "cidr-prefix",
        with_rule(client_addresses=["10.0.0.0/33"]),
        "policy.rules[0].client_addresses[0]",
        "invalid IP address or network '10.0.0.0/33' (use an IP",
    ),
    (
        "cidr-hostname",
        with_rule(client_addresses=["10.0.0.0/8", "db-1"]),
        "policy.rules[0].client_addresses[1]",
        "'db-1'",
    ),
    ("cidr-empty-string", with_rule(client_addresses=[""]), "policy.rules[0].client_addresses[0]", "''"),
    (
        "regex",
        with_rule(query_matches="(SELECT"),
        "policy.rules[0].query_matches",
        "invalid regular expression '(SELECT' (missing )",
    ),
    (
        "regex-not-str",
        with_rule(query_matches=["a"]),
        "policy.rules[0].query_matches",
        "expected a regular expression string",
    ),
    ("except-empty", with_rule(**{"except": {}}), "policy.rules[0].except", "except needs at least one of states"),
    (
        "except-all-none",
        with_rule(**{"except": {"users": None}}),
        "policy.rules[0].except",
        "except needs at least one",
    ),
    ("except-not-dict", with_rule(**{"except": ["x"]}), "policy.rules[0].except", "expected a mapping"),
    ("except-unknown-key", with_rule(**{"except": {"name": "x"}}), "policy.rules[0].except.name", "unknown key 'name'"),
    ("except-action", with_rule(**{"except": {"action": "cancel"}}), "policy.rules[0].except.action", "unknown key"),
    (
        "except-cidr",
        with_rule(**{"except": {"client_addresses": "10.0.0/8x"}}),
        "policy.rules[0].except.client_addresses[0]",
        "'10.0.0/8x'",
    ),
    ("except-glob", with_rule(**{"except": {"users": "[x"}}), "policy.rules[0].except.users[0]", "invalid glob '[x'"),
    (
        "except-duration",
        with_rule(**{"except": {"idle_longer_than": "1x"}}),
        "policy.rules[0].except.idle_longer_than",
        "'1x'",
    ),
    ("except-states-empty", with_rule(**{"except": {"states": []}}), "policy.rules[0].except.states", "empty list"),
    (
        "second-rule-index",
        {"rules": [dict(GOOD_RULE), {"name": "b", "states": ["bogus"]}]},
        "policy.rules[1].states[0]",
        "'bogus'",
    ),
    ("protect-not-dict", with_top(protect=["postgres"]), "policy.protect", "expected a mapping"),
    (
        "protect-unknown-key",
        with_top(protect={"roles": ["x"]}),
        "policy.protect.roles",
        "unknown key 'roles' (allowed: users,",
    ),
    (
        "protect-glob",
        with_top(protect={"applications": ["pg_dump*", "x[y"]}),
        "policy.protect.applications[1]",
        "'x[y'",
    ),
    (
        "protect-cidr",
        with_top(protect={"client_addresses": ["10.1.0.0/16", "nope"]}),
        "policy.protect.client_addresses[1]",
        "'nope'",
    ),
    (
        "protect-superusers",
        with_top(protect={"superusers": "maybe"}),
        "policy.protect.superusers",
        "expected a boolean (true or false), got 'maybe'",
    ),
    ("protect-superusers-int", with_top(protect={"superusers": 2}), "policy.protect.superusers", "got 2"),
    ("limits-not-dict", with_top(limits=5), "policy.limits", "expected a mapping"),
    (
        "limits-unknown-key",
        with_top(limits={"max_sessions": 3}),
        "policy.limits.max_sessions",
        "unknown key 'max_sessions'",
    ),
    (
        "max-terminations-negative",
        with_top(limits={"max_terminations": -1}),
        "policy.limits.max_terminations",
        "expected a whole number >= 0 or 'unlimited', got -1",
    ),
    ("max-terminations-float", with_top(limits={"max_terminations": 1.5}), "policy.limits.max_terminations", "got 1.5"),
    (
        "max-terminations-bool",
        with_top(limits={"max_terminations": True}),
        "policy.limits.max_terminations",
        "got True",
    ),
    (
        "max-terminations-text",
        with_top(limits={"max_terminations": "ten"}),
        "policy.limits.max_terminations",
        "got 'ten'",
    ),
    (
        "max-fraction-zero",
        with_top(limits={"max_fraction": 0}),
        "policy.limits.max_fraction",
        "expected a fraction above 0 and at most 1",
    ),
    ("max-fraction-above-one", with_top(limits={"max_fraction": 1.5}), "policy.limits.max_fraction", "got 1.5"),
    ("max-fraction-negative", with_top(limits={"max_fraction": -0.1}), "policy.limits.max_fraction", "got -0.1"),
    ("max-fraction-percent", with_top(limits={"max_fraction": 50}), "policy.limits.max_fraction", "got 50"),
    ("max-fraction-bool", with_top(limits={"max_fraction": True}), "policy.limits.max_fraction", "got True"),
    ("max-fraction-text", with_top(limits={"max_fraction": "half"}), "policy.limits.max_fraction", "got 'half'"),
    ("max-fraction-nan", with_top(limits={"max_fraction": "nan"}), "policy.limits.max_fraction", "got 'nan'"),
    # The one spelling that lifts a limit is 'unlimited'; anything else that looks like it is refused.
    (
        "max-terminations-none-text",
        with_top(limits={"max_terminations": "none"}),
        "policy.limits.max_terminations",
        "or 'unlimited', got 'none'",
    ),
    (
        "max-fraction-unlimited-capital",
        with_top(limits={"max_fraction": "Unlimited"}),
        "policy.limits.max_fraction",
        "or 'unlimited', got 'Unlimited'",
    ),
    ("limits-unlimited-whole", with_top(limits="unlimited"), "policy.limits", "expected a mapping"),
]


@pytest.mark.parametrize(
    "raw, field, fragment", [case[1:] for case in INVALID_POLICIES], ids=[case[0] for case in INVALID_POLICIES]
)
def test_invalid_policy_names_field_and_value(raw, field, fragment):
    with pytest.raises(PolicyError) as caught:
        parse_policy(copy.deepcopy(raw))
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ")
    assert fragment in str(caught.value)


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


def test_hostile_value_is_quoted_on_one_line_in_errors():
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_rule(users=["x'; DROP ROLE app; --\n[%s"]))
    message = str(caught.value)
    assert "\n" not in message
    assert "'x\\'; DROP ROLE app; --\\n[%s'" in message or '"x\'; DROP ROLE app; --\\n[%s"' in message


def test_parse_policy_does_not_modify_its_input():
    raw = with_top(name="n", protect={"users": "bob"}, limits={"max_fraction": "0.5"})
    before = copy.deepcopy(raw)
    parse_policy(raw)
    assert raw == before


# --------------------------------------------------------------------------- defaults and normalization


def test_defaults():
    policy = parse_policy(
        {"rules": [{"states": "idle"}], "name": None, "action": None, "grace": None, "protect": None, "limits": None}
    )
    assert policy.name == "unnamed"
    assert policy.action == "terminate"
    assert policy.grace == 10
    assert [rule.name for rule in policy.rules] == ["rule-0"]
    assert policy.rules[0].action == "terminate"
    assert policy.protect.superusers is True
    # No limits given: the default limits per host (docs/architecture.md, "Dry runs in the open").
    assert policy.limits.max_terminations == 100
    assert policy.limits.max_fraction == 0.9
    assert policy.limits.defaults == ("max_terminations", "max_fraction")


@pytest.mark.parametrize(
    "limits, effective, defaults",
    [
        (None, {"max_terminations": 100, "max_fraction": 0.9}, ["max_terminations", "max_fraction"]),
        ({}, {"max_terminations": 100, "max_fraction": 0.9}, ["max_terminations", "max_fraction"]),
        ({"max_terminations": 500}, {"max_terminations": 500, "max_fraction": 0.9}, ["max_fraction"]),
        ({"max_fraction": None}, {"max_terminations": 100, "max_fraction": 0.9}, ["max_terminations", "max_fraction"]),
        (
            {"max_terminations": "unlimited"},
            {"max_terminations": "unlimited", "max_fraction": 0.9},
            ["max_fraction"],
        ),
        (
            {"max_terminations": " unlimited ", "max_fraction": "unlimited"},
            {"max_terminations": "unlimited", "max_fraction": "unlimited"},
            [],
        ),
        ({"max_terminations": 100, "max_fraction": 0.9}, {"max_terminations": 100, "max_fraction": 0.9}, []),
    ],
)
def test_limits_default_per_key_and_lift_with_unlimited(limits, effective, defaults):
    policy = parse_policy(with_top(limits=limits))
    assert policy.limits.to_dict() == effective
    assert policy.limits.shown() == dict(effective, defaults=defaults)
    lifted = [name for name, value in effective.items() if value == "unlimited"]
    assert [name for name in ("max_terminations", "max_fraction") if getattr(policy.limits, name) is None] == lifted
    # The normalized policy parses back to the same limits in effect.
    assert parse_policy(policy.to_dict()).limits.to_dict() == effective


def test_unset_suboptions_filled_with_none_are_absent():
    # What Ansible hands over for a policy with one rule and an empty protect.
    raw = {
        "name": "n",
        "action": None,
        "grace": None,
        "rules": [{key: None for key in CONDITION_KEYS + ("name", "action", "except")}],
        "protect": {
            "users": None,
            "applications": None,
            "databases": None,
            "client_addresses": None,
            "superusers": None,
        },
        "limits": {"max_terminations": None, "max_fraction": None},
    }
    raw["rules"][0]["states"] = ["idle"]
    policy = parse_policy(raw)
    assert policy.rules[0].conditions_used == {"states"}
    assert policy.protect.superusers is True
    assert policy.to_dict()["protect"]["users"] == []


FULL_POLICY = {
    "name": "nightly-sweep",
    "action": "cancel_then_terminate",
    "grace": "1m",
    "rules": [
        {"name": "ghost-idle", "states": ["idle"], "idle_longer_than": "30m"},
        {"name": "stuck-transaction", "states": "idle_in_transaction", "transaction_longer_than": 300},
        {
            "name": "runaway-query",
            "states": ["active"],
            "running_longer_than": "2h",
            "action": "cancel",
            "query_matches": "^SELECT",
        },
        {
            "name": "foreign-origin",
            "client_addresses": ["0.0.0.0/0", "::/0"],
            "except": {"client_addresses": ["10.1.2.3/8", "LOCAL"], "users": "app"},
        },
        {"users": ["old_*"], "connected_longer_than": "1d", "databases": "legacy", "applications": ["cron*"]},
    ],
    "protect": {
        "users": ["replicator", "backup_*"],
        "applications": "pg_dump*",
        "client_addresses": ["10.1.0.0/16", "local"],
        "superusers": "no",
    },
    "limits": {"max_terminations": "100", "max_fraction": "0.5"},
}


def test_to_dict_is_the_normalized_policy():
    normalized = parse_policy(copy.deepcopy(FULL_POLICY)).to_dict()
    assert normalized == {
        "name": "nightly-sweep",
        "action": "cancel_then_terminate",
        "grace": 60,
        "rules": [
            {"name": "ghost-idle", "action": "cancel_then_terminate", "states": ["idle"], "idle_longer_than": 1800},
            {
                "name": "stuck-transaction",
                "action": "cancel_then_terminate",
                "states": ["idle_in_transaction"],
                "transaction_longer_than": 300,
            },
            {
                "name": "runaway-query",
                "action": "cancel",
                "states": ["active"],
                "running_longer_than": 7200,
                "query_matches": "^SELECT",
            },
            {
                "name": "foreign-origin",
                "action": "cancel_then_terminate",
                "client_addresses": ["0.0.0.0/0", "::/0"],
                "except": {"users": ["app"], "client_addresses": ["10.0.0.0/8", "local"]},
            },
            {
                "name": "rule-4",
                "action": "cancel_then_terminate",
                "users": ["old_*"],
                "databases": ["legacy"],
                "applications": ["cron*"],
                "connected_longer_than": 86400,
            },
        ],
        "protect": {
            "users": ["replicator", "backup_*"],
            "applications": ["pg_dump*"],
            "databases": [],
            "client_addresses": ["10.1.0.0/16", "local"],
            "superusers": False,
        },
        "limits": {"max_terminations": 100, "max_fraction": 0.5},
    }
    assert json.loads(json.dumps(normalized)) == normalized


def test_conditions_used_include_except():
    policy = parse_policy(copy.deepcopy(FULL_POLICY))
    assert policy.rules[3].conditions_used == {"client_addresses", "users"}
    assert policy.conditions_used() == {
        "states",
        "idle_longer_than",
        "transaction_longer_than",
        "running_longer_than",
        "query_matches",
        "client_addresses",
        "users",
        "databases",
        "applications",
        "connected_longer_than",
    }
    assert parse_policy({"rules": [{"states": ["idle"], "except": {"query_matches": "x"}}]}).conditions_used() == {
        "states",
        "query_matches",
    }


# (id, policy fields, rule index, effective action)
ACTIONS = [
    ("default", {}, {}, "terminate"),
    ("policy-level", {"action": "cancel"}, {}, "cancel"),
    ("rule-overrides-default", {}, {"action": "cancel"}, "cancel"),
    ("rule-overrides-policy", {"action": "cancel"}, {"action": "terminate"}, "terminate"),
    (
        "rule-cancel-then-terminate",
        {"action": "terminate"},
        {"action": "cancel_then_terminate"},
        "cancel_then_terminate",
    ),
]


@pytest.mark.parametrize("top, rule, expected", [case[1:] for case in ACTIONS], ids=[case[0] for case in ACTIONS])
def test_rule_action_override(top, rule, expected):
    raw = dict(top)
    raw["rules"] = [dict(GOOD_RULE, **rule), {"name": "other", "states": ["active"]}]
    policy = parse_policy(raw)
    assert policy.rules[0].action == expected
    assert policy.rules[1].action == top.get("action", "terminate")


# --------------------------------------------------------------------------- matching

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


def test_match_returns_the_first_matching_rule():
    policy = parse_policy(
        {
            "rules": [
                {"name": "first", "states": ["idle"], "idle_longer_than": "1h"},
                {"name": "second", "states": ["idle"]},
                {"name": "third", "users": ["*"]},
            ]
        }
    )
    assert policy.match(session(idle_seconds=7200)).name == "first"
    assert policy.match(session(idle_seconds=60)).name == "second"
    assert policy.match(session(state="active")).name == "third"
    assert parse_policy({"rules": [{"states": ["active"]}]}).match(session()) is None


# --------------------------------------------------------------------------- protect

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


# --------------------------------------------------------------------------- lenient inputs

# (id, raw changes, getter, expected)
LENIENT = [
    ("superusers-yes", {"protect": {"superusers": "yes"}}, lambda p: p.protect.superusers, True),
    ("superusers-off", {"protect": {"superusers": "Off"}}, lambda p: p.protect.superusers, False),
    ("max-terminations-digits", {"limits": {"max_terminations": "7"}}, lambda p: p.limits.max_terminations, 7),
    ("max-terminations-zero", {"limits": {"max_terminations": 0}}, lambda p: p.limits.max_terminations, 0),
    ("max-fraction-text", {"limits": {"max_fraction": "0.25"}}, lambda p: p.limits.max_fraction, 0.25),
    ("max-fraction-one", {"limits": {"max_fraction": 1}}, lambda p: p.limits.max_fraction, 1.0),
    ("name-empty", {"name": ""}, lambda p: p.name, "unnamed"),
    ("grace-int", {"grace": 0}, lambda p: p.grace, 0),
    ("grace-text", {"grace": "1m30s"}, lambda p: p.grace, 90),
    (
        "local-any-case",
        {"protect": {"client_addresses": "Local"}},
        lambda p: p.to_dict()["protect"]["client_addresses"],
        ["local"],
    ),
]


@pytest.mark.parametrize("changes, getter, expected", [case[1:] for case in LENIENT], ids=[case[0] for case in LENIENT])
def test_lenient_inputs(changes, getter, expected):
    assert getter(parse_policy(with_top(**changes))) == expected


# --------------------------------------------------------------------------- hostile input (issue 8)

DURATIONS_REFUSED = [
    (float("nan"), "finite"),
    (float("inf"), "finite"),
    (float("-inf"), "finite"),
    (1.5, "fractions of a second"),
    (-1.0, "negative"),
    (-1, "negative"),
    (True, "use 45s"),
    ("nan", "use 45s"),
    ("inf", "use 45s"),
    ("9" * 5000, "longer than 40 characters"),  # int() of 4,300+ digits is a ValueError on 3.11+
]


@pytest.mark.parametrize("value, why", DURATIONS_REFUSED, ids=lambda v: repr(v)[:20])
def test_durations_refuse_non_finite_fractional_boolean_negative(value, why):
    with pytest.raises(PolicyError) as caught:
        parse_duration(value, "policy.rules[0].idle_longer_than")
    assert caught.value.field == "policy.rules[0].idle_longer_than"
    assert str(caught.value).startswith("policy.rules[0].idle_longer_than: invalid duration ")
    assert why in str(caught.value)
    assert len(str(caught.value)) < 300


def test_whole_float_durations_are_seconds():
    # 30.0 is what a template computing seconds gives.
    assert parse_duration(30.0, "f") == 30
    assert parse_duration(0.0, "f") == 0


def test_condition_durations_have_an_upper_bound_of_366_days():
    assert MAX_DURATION == 366 * 86400
    assert parse_duration("366d", "f") == MAX_DURATION
    for value in ("367d", MAX_DURATION + 1, "99999999999d"):
        with pytest.raises(PolicyError) as caught:
            parse_duration(value, "policy.rules[0].idle_longer_than")
        assert "above the maximum for this field, 366d (31622400 seconds)" in str(caught.value)


def test_grace_beyond_an_hour_fails_naming_field_and_value():
    # Used to be accepted: cancel_then_terminate then slept for 3,000 years.
    assert MAX_GRACE == 3600
    assert parse_policy(with_top(grace="1h", action="cancel_then_terminate")).grace == 3600
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_top(grace="99999999999d", action="cancel_then_terminate"))
    assert caught.value.field == "policy.grace"
    assert str(caught.value) == (
        "policy.grace: duration '99999999999d' is above the maximum for this field, 1h (3600 seconds)"
    )
    with pytest.raises(PolicyError):
        parse_policy(with_top(grace=3601))


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


HUGE = "x" * 100000


@pytest.mark.parametrize(
    "raw",
    [
        with_rule(users=[HUGE + "["]),
        with_rule(states=[HUGE]),
        with_rule(action=HUGE),
        with_rule(client_addresses=[HUGE]),
        with_rule(idle_longer_than=HUGE),
        with_rule(query_matches=HUGE),
        with_rule(name=HUGE),
        with_top(name=HUGE),
        with_top(limits={"max_fraction": HUGE}),
        with_top(limits={"max_terminations": HUGE}),
        with_top(protect={"superusers": HUGE}),
        with_top(rules=HUGE),
        with_top(**{HUGE: 1}),
        with_rule(**{HUGE: 1}),
        with_top(limits={"max_terminations": [HUGE] * 1000}),
        with_top(limits={"max_fraction": 10**400}),
        HUGE,
    ],
    ids=lambda raw: "case",
)
def test_messages_quote_long_values_cut_short(raw):
    with pytest.raises(PolicyError) as caught:
        parse_policy(copy.deepcopy(raw))
    message = str(caught.value)
    # A few hundred characters: the value cut short, the allowed keys (a rule has 21) listed whole.
    assert len(message) < 600, message[:700]
    assert len(caught.value.field) < 100
    assert message.startswith(caught.value.field + ": ")
    if "xxxx" in message:
        assert "(100001 characters)" in message or "(100000 characters)" in message or "..." in message


def test_a_cut_value_still_shows_its_start_and_length():
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_rule(states=["sleeping" + "z" * 500]))
    assert "'sleepingzzz" in str(caught.value)
    assert "... (508 characters)" in str(caught.value)


def test_deeply_nested_value_in_a_message_does_not_recurse():
    nested = []
    for _level in range(100000):
        nested = [nested]
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_top(name=nested))
    assert len(str(caught.value)) < 300


# --------------------------------------------------------------------------- the policy as a string (issue 13)

POLICY_JSON = json.dumps(FULL_POLICY)
POLICY_YAML = """
name: nightly-sweep
action: cancel_then_terminate
grace: 1m
rules:
  - name: ghost-idle
    states: [idle]
    idle_longer_than: 30m
  - name: stuck-transaction
    states: idle_in_transaction
    transaction_longer_than: 300
  - name: runaway-query
    states: [active]
    running_longer_than: 2h
    action: cancel
    query_matches: ^SELECT
  - name: foreign-origin
    client_addresses: ["0.0.0.0/0", "::/0"]
    except: {client_addresses: [10.1.2.3/8, LOCAL], users: app}
  - users: [old_*]
    connected_longer_than: 1d
    databases: legacy
    applications: ["cron*"]
protect:
  users: [replicator, backup_*]
  applications: pg_dump*
  client_addresses: [10.1.0.0/16, local]
  superusers: no
limits: {max_terminations: "100", max_fraction: "0.5"}
"""


@pytest.mark.parametrize("text", [POLICY_JSON, POLICY_YAML, "  " + POLICY_JSON + "\n"], ids=["json", "yaml", "blanks"])
def test_policy_as_a_string_is_the_same_policy(text):
    assert parse_policy(text).to_dict() == parse_policy(copy.deepcopy(FULL_POLICY)).to_dict()


def test_policy_string_is_validated_like_the_mapping():
    with pytest.raises(PolicyError) as caught:
        parse_policy('{"rules": [{"idle_longer_than": "5x"}]}')
    assert str(caught.value) == (
        "policy.rules[0].idle_longer_than: invalid duration '5x' (use 45s, 30m, 1h30m, 2d or a whole number of seconds)"
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty string"),
        ("   \n", "empty string"),
        ("null", "holds no policy"),
        ("~", "holds no policy"),
        ("[1, 2]", "expected a mapping"),
        ("42", "expected a mapping"),
        ('"{\\"rules\\": []}"', "expected a mapping"),  # parsed once: a JSON string in a string stays a string
        ("rules: [\n", "neither JSON nor YAML"),
        ("{rules: [}", "neither JSON nor YAML"),
        ("a: b: c", "neither JSON nor YAML"),
        ("[" * 100000, "neither JSON nor YAML"),  # RecursionError in both parsers
        ("x" * (MAX_POLICY_TEXT + 1), "longer than 1000000 characters"),
        ("!!python/object/apply:os.system ['true']", "neither JSON nor YAML"),  # the safe loader
    ],
    ids=lambda v: repr(v)[:20],
)
def test_bad_policy_string_fails_naming_the_field_policy(text, fragment):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.field == "policy"
    assert str(caught.value).startswith("policy: ")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 500


def test_without_pyyaml_json_still_works_and_yaml_says_why(monkeypatch):
    monkeypatch.setattr(_policy, "_import_yaml", lambda: None)
    assert parse_policy(POLICY_JSON).name == "nightly-sweep"
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY_YAML)
    assert caught.value.field == "policy"
    assert "is not valid JSON" in str(caught.value)
    assert "PyYAML is missing" in str(caught.value)
    assert "pip install PyYAML" in str(caught.value)


def test_pyyaml_is_imported_lazily():
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from ansible_collections.dbhygiene.sessions.plugins.module_utils import _policy;"
        "assert 'yaml' not in sys.modules;"
        '_policy.parse_policy(\'{"rules": [{"states": "idle"}]}\');'
        "assert 'yaml' not in sys.modules;"
        "_policy.parse_policy('rules: [{states: idle}]');"
        "assert 'yaml' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script, COLLECTIONS], check=True, timeout=60)


@pytest.mark.parametrize("value", [POLICY_JSON, POLICY_YAML, copy.deepcopy(FULL_POLICY)], ids=["json", "yaml", "dict"])
def test_the_policy_option_takes_a_mapping_json_or_yaml(value):
    # AnsibleModule with `type: dict` converted JSON strings and refused YAML ones.
    validated = ArgumentSpecValidator({"policy": policy_spec()}).validate({"policy": value})
    assert validated.error_messages == []
    policy = parse_policy(validated.validated_parameters["policy"])
    assert policy.to_dict() == parse_policy(copy.deepcopy(FULL_POLICY)).to_dict()


def test_the_policy_option_is_required():
    validated = ArgumentSpecValidator({"policy": policy_spec()}).validate({})
    assert "missing required arguments: policy" in " ".join(validated.error_messages)


# --------------------------------------------------------------------------- lock conditions

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
