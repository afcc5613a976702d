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
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._argspec import policy_spec
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import CONDITION_KEYS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import (
    MAX_GRACE,
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
