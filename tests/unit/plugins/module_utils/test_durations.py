# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations (module_utils/_durations.py): the forms accepted, the values refused with the field
and the value named, the upper bounds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import (
    MAX_DURATION,
    NUMBER_TEXT_MAX,
    digits_value,
    human_duration,
    is_int,
    parse_duration,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

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


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m"), (5400, "1h30m"), (93784, "1d2h3m4s")])
def test_human_duration_is_the_shortest_text_that_parses_back(seconds, text):
    assert human_duration(seconds) == text
    assert parse_duration(text, "f") == seconds


@pytest.mark.parametrize(
    "value, number",
    [
        ("7", 7),
        (" 30 ", 30),
        ("0", 0),
        ("-1", None),
        ("1.5", None),
        ("", None),
        (7, None),
        ("9" * NUMBER_TEXT_MAX, int("9" * 40)),
    ],
)
def test_digits_value_reads_only_a_text_of_digits(value, number):
    assert digits_value(value) == number
    assert digits_value("9" * (NUMBER_TEXT_MAX + 1)) is None


def test_a_bool_is_not_an_int():
    assert is_int(3) and is_int(0) and not is_int(True) and not is_int(3.0) and not is_int("3")
