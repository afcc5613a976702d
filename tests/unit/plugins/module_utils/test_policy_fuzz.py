# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based fuzzing of the policy core (issue 8): whatever the input,
parse_policy returns a Policy or raises PolicyError with a short message naming
a field; durations round-trip; planning a parsed policy never raises.

Bounded: every test has max_examples and a per-example deadline; the whole file
runs in well under 20 seconds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from datetime import timedelta

import yaml
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import CONDITION_KEYS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import STATES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import (
    MAX_DURATION,
    human_duration,
    parse_duration,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import ACTIONS, Policy, parse_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Short enough to stay readable, long enough that a message echoing a value whole fails. A rule's
# list of allowed keys alone is 334 characters since the group conditions (budgets) joined it.
MAX_MESSAGE = 560

FUZZ = settings(
    max_examples=200,
    # Catches a pathological input (seconds of work per example), not a busy machine: one example
    # went over 5 s at load 30 on 2 cores.
    deadline=timedelta(seconds=30),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- strategies

atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # nan, inf, -0.0, 1e308 included
    st.text(max_size=30),
    st.text(max_size=3000),
)
json_like = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=20), children, max_size=5),
    ),
    max_leaves=25,
)

durations = st.one_of(
    st.integers(min_value=-5, max_value=MAX_DURATION * 2),
    st.floats(),
    st.from_regex(r"\A ?[0-9]{0,12}[dhms]?([0-9]{1,3}[hms])? ?\Z", fullmatch=True),
    st.sampled_from(["nan", "inf", "-1s", "1.5", "99999999999d", "1d2h3m4s", "9" * 5000, "", "30M"]),
)
good_durations = st.one_of(
    st.integers(min_value=0, max_value=7200),
    st.sampled_from(["45s", "30m", "1h30m", "2d", "0", "10", 30.0]),
)
globs = st.text(alphabet="ab*?[]!-^\\%_", max_size=12)
good_globs = st.one_of(st.text(alphabet="ab*?%_", max_size=6), st.sampled_from(["[ab]*", "[!a]?", "[[]x"]))
regexes = st.text(alphabet="a+*?()[]{}|^$.\\0123456789,", max_size=20)
good_regexes = st.one_of(st.text(alphabet="ab.*+?^$!' ", max_size=8), st.sampled_from(["^SELECT", "(a|b)+", "a{2,3}"]))
addresses = st.one_of(
    st.sampled_from(["10.0.0.0/8", "::/0", "local", "LOCAL", "10.1.2.3/16", "fe80::1", "300.1.1.1", "1.2.3.4/33"]),
    st.text(alphabet="0123456789.:/abcdef", max_size=20),
)
good_addresses = st.sampled_from(["10.0.0.0/8", "::/0", "0.0.0.0/0", "local", "10.1.2.3/16", "fe80::1", "192.0.2.7"])


def a_list_or_one(element):
    return st.one_of(element, st.lists(element, min_size=1, max_size=4))


good_values = {
    "states": a_list_or_one(st.sampled_from(STATES)),
    "users": a_list_or_one(good_globs),
    "databases": a_list_or_one(good_globs),
    "applications": a_list_or_one(good_globs),
    "client_addresses": a_list_or_one(good_addresses),
    "idle_longer_than": good_durations,
    "running_longer_than": good_durations,
    "transaction_longer_than": good_durations,
    "connected_longer_than": good_durations,
    "query_matches": good_regexes,
    "waiting_longer_than": good_durations,
    "blocking_longer_than": good_durations,
    "blocking_at_least": st.one_of(st.integers(min_value=1, max_value=1000), st.sampled_from(["1", " 3 ", 2.0])),
}
bad_values = {
    "states": a_list_or_one(st.text(max_size=10)),
    "users": a_list_or_one(globs),
    "databases": a_list_or_one(globs),
    "applications": a_list_or_one(globs),
    "client_addresses": a_list_or_one(addresses),
    "idle_longer_than": durations,
    "running_longer_than": durations,
    "transaction_longer_than": durations,
    "connected_longer_than": durations,
    "query_matches": regexes,
    "waiting_longer_than": durations,
    "blocking_longer_than": durations,
    "blocking_at_least": st.one_of(st.integers(min_value=-3, max_value=2000000), st.floats(), st.text(max_size=8)),
}


def conditions(values, min_size=0):
    """A mapping of 1+ condition keys to values from ``values`` (the key decides the strategy)."""
    pairs = st.sampled_from(CONDITION_KEYS).flatmap(lambda key: st.tuples(st.just(key), values[key]))
    return st.lists(pairs, min_size=min_size, max_size=4).map(dict)


def rules(values, extra):
    return st.builds(
        lambda body, more: dict(body, **more),
        conditions(values, min_size=1),
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(st.text(alphabet="abc-", max_size=8), extra),
                "action": st.one_of(st.sampled_from(ACTIONS), extra),
                "except": st.one_of(conditions(values, min_size=1), extra),
            },
        ),
    )


def policy_mappings(values, extra):
    return st.fixed_dictionaries(
        {"rules": st.one_of(st.lists(rules(values, extra), min_size=1, max_size=4), extra)},
        optional={
            "name": st.one_of(st.text(max_size=30), extra),
            "action": st.one_of(st.sampled_from(ACTIONS), extra),
            "grace": st.one_of(good_durations, extra),
            "protect": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "users": a_list_or_one(values["users"]),
                        "applications": a_list_or_one(values["applications"]),
                        "databases": a_list_or_one(values["databases"]),
                        "client_addresses": a_list_or_one(values["client_addresses"]),
                        "superusers": st.one_of(st.booleans(), st.sampled_from(["yes", "no", "maybe"])),
                    },
                ),
                extra,
            ),
            "limits": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "max_terminations": st.one_of(st.integers(min_value=0, max_value=100), st.text(max_size=50)),
                        "max_fraction": st.one_of(st.floats(min_value=0.01, max_value=1), st.text(max_size=50)),
                    },
                ),
                extra,
            ),
        },
    )


# Mostly valid policies (so that planning and round trips get exercised), and hostile ones.
policies = st.one_of(
    policy_mappings(good_values, st.nothing()),
    policy_mappings(good_values, json_like),
    policy_mappings(bad_values, json_like),
)
hostile_policies = st.one_of(
    policies,
    st.builds(lambda p, k, v: dict(p, **{k: v}), policies, st.text(max_size=200), json_like),
    json_like,
)

sessions = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(min_value=1, max_value=10**6),
            "state": st.sampled_from(STATES),
        },
        optional={
            "user": st.one_of(st.none(), st.text(alphabet="ab_%*?[", max_size=10)),
            "database": st.one_of(st.none(), st.text(max_size=10)),
            "application": st.one_of(st.none(), st.text(max_size=10)),
            "client_addr": st.one_of(st.none(), addresses),
            "idle_seconds": st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
            "query_seconds": st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
            "transaction_seconds": st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
            "connected_seconds": st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
            "query": st.one_of(st.none(), st.text(alphabet="ab ()'!;", max_size=30)),
            "superuser": st.booleans(),
        },
    ),
    max_size=8,
    unique_by=lambda s: s["id"],
)


# --------------------------------------------------------------------------- properties


def parse_or_error(raw):
    """The Policy, or the PolicyError after checking its message; anything else escapes."""
    try:
        return parse_policy(raw)
    except PolicyError as error:
        message = str(error)
        assert isinstance(error.field, str)
        assert error.field == "policy" or error.field.startswith(("policy.", "policy ")), error.field
        assert message.startswith(error.field + ": "), message[:200]
        assert len(message) <= MAX_MESSAGE, message[:200]
        assert "\n" not in message
        return error


@FUZZ
@given(hostile_policies)
def test_any_mapping_parses_or_fails_naming_a_field(raw):
    parsed = parse_or_error(raw)
    if isinstance(parsed, Policy):
        # The normalized policy is itself a valid policy, and the same one.
        normalized = parsed.to_dict()
        json.dumps(normalized)
        assert parse_policy(normalized).to_dict() == normalized


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(alphabet="{}[]:,-\"' \n\tab0&*!|>", max_size=200)))
def test_any_string_parses_or_fails_naming_a_field(text):
    parse_or_error(text)


@FUZZ
@given(policies)
def test_a_policy_as_json_or_yaml_text_is_the_policy_itself(raw):
    as_mapping = parse_or_error(raw)
    for text in (json.dumps(raw), yaml.safe_dump(raw, sort_keys=False)):
        as_text = parse_or_error(text)
        if isinstance(as_mapping, Policy):
            assert as_text.to_dict() == as_mapping.to_dict()
        else:
            assert isinstance(as_text, PolicyError)
            assert as_text.field == as_mapping.field


@settings(FUZZ, max_examples=100)
@given(policies, sessions)
def test_planning_a_valid_policy_never_raises(raw, records):
    policy = parse_or_error(raw)
    if not isinstance(policy, Policy):
        return
    result = _planner.plan(records, policy, match_deadline=5)
    assert result.seen == len(records)
    assert result.matched == len(result.victims) + len(result.not_ended)
    json.dumps(result.to_dict())


@FUZZ
@given(durations)
def test_any_duration_is_seconds_or_a_short_error(value):
    try:
        seconds = parse_duration(value, "policy.grace")
    except PolicyError as error:
        assert error.field == "policy.grace"
        assert len(str(error)) <= MAX_MESSAGE
        return
    assert isinstance(seconds, int) and not isinstance(seconds, bool)
    assert 0 <= seconds <= MAX_DURATION


@FUZZ
@given(st.integers(min_value=0, max_value=MAX_DURATION))
def test_durations_round_trip(seconds):
    assert parse_duration(human_duration(seconds), "f") == seconds
    assert parse_duration(str(seconds), "f") == seconds
    assert parse_duration(float(seconds), "f") == seconds


@FUZZ
@given(
    st.integers(min_value=0, max_value=366),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_unit_durations_add_up(days, hours, minutes, seconds):
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    text = f"{days}d{hours}h{minutes}m{seconds}s"
    if total > MAX_DURATION:
        try:
            parse_duration(text, "f")
        except PolicyError as error:
            assert "above the maximum" in str(error)
        else:
            raise AssertionError(f"{text} accepted above the maximum")
    else:
        assert parse_duration(text, "f") == total
