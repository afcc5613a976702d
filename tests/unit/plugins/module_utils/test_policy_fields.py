# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of one policy field (module_utils/_policy_fields.py): each returns the value checked
or raises a PolicyError naming the field and the value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy_fields import (
    MAX_NAME_LENGTH,
    as_list,
    check_keys,
    key_name,
    parse_bool,
    parse_count,
    parse_name,
    present,
    scalar_text,
)


def test_an_unknown_key_is_named_with_the_keys_allowed():
    check_keys({"a": 1}, ("a", "b"), "policy")
    with pytest.raises(PolicyError) as caught:
        check_keys({"a": 1, "c": 2}, ("a", "b"), "policy")
    assert caught.value.field == "policy.c" and str(caught.value) == "policy.c: unknown key 'c' (allowed: a, b)"
    with pytest.raises(PolicyError) as caught:
        check_keys(["a"], ("a", "b"), "policy.protect")
    assert str(caught.value) == "policy.protect: expected a mapping with keys a, b, got ['a']"


def test_a_key_is_written_plain_when_short_text_else_quoted():
    assert key_name("users") == "users"
    assert key_name("two words") == "'two words'"
    assert key_name(3) == "3"
    assert key_name("x" * 41) == "'" + "x" * 30 + "'... (41 characters)"


def test_none_is_not_set():
    assert present({"a": 0}, "a") and present({"a": ""}, "a")
    assert not present({"a": None}, "a") and not present({}, "a")


def test_a_single_value_is_a_one_element_list_and_an_empty_list_is_refused_where_it_would_match_nothing():
    assert as_list("bob", "f", allow_empty=False) == ["bob"]
    assert as_list(7, "f", allow_empty=False) == [7]
    assert as_list(("a", "b"), "f", allow_empty=False) == ["a", "b"]
    assert as_list([], "f", allow_empty=True) == []
    with pytest.raises(PolicyError, match="^f: empty list: it would match nothing"):
        as_list([], "f", allow_empty=False)
    with pytest.raises(PolicyError, match="^f: expected a list"):
        as_list(True, "f", allow_empty=False)


def test_a_list_element_is_text_or_a_whole_number():
    assert scalar_text("app", "f[0]") == "app" and scalar_text(1234, "f[0]") == "1234"
    for value in (True, 1.5, None, ["a"]):
        with pytest.raises(PolicyError) as caught:
            scalar_text(value, "f[0]")
        assert caught.value.field == "f[0]" and caught.value.value is value


@pytest.mark.parametrize(
    "value, expected", [(True, True), (False, False), ("yes", True), (" Off ", False), ("1", True), ("0", False)]
)
def test_booleans_take_the_yaml_words(value, expected):
    assert parse_bool(value, "f") is expected


@pytest.mark.parametrize("value", ["maybe", 1, None, ""])
def test_anything_else_is_not_a_boolean(value):
    with pytest.raises(PolicyError, match="^f: expected a boolean"):
        parse_bool(value, "f")


def test_a_name_defaults_when_unset_and_is_bounded():
    assert parse_name(None, "f", "dflt") == "dflt" and parse_name("", "f", "dflt") == "dflt"
    assert parse_name("x" * MAX_NAME_LENGTH, "f", "d") == "x" * MAX_NAME_LENGTH
    with pytest.raises(PolicyError, match="longer than 200 characters"):
        parse_name("x" * (MAX_NAME_LENGTH + 1), "f", "d")
    with pytest.raises(PolicyError, match="expected a string"):
        parse_name(3, "f", "d")


@pytest.mark.parametrize("value, number", [(3, 3), (3.0, 3), (" 3 ", 3), ("0", 0), (10, 10)])
def test_a_count_is_a_whole_number_within_its_bounds(value, number):
    assert parse_count(value, "f", 0, 10, "sessions") == number


@pytest.mark.parametrize("value", [-1, 11, 3.5, "3.5", True, None, float("inf"), "1e3"])
def test_a_count_outside_its_bounds_or_not_whole_fails_naming_the_range(value):
    with pytest.raises(PolicyError) as caught:
        parse_count(value, "f", 0, 10, "sessions")
    assert str(caught.value).startswith("f: expected a whole number of sessions from 0 to 10, got ")
