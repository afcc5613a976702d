# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How messages quote values and cut text: the drivers' way and the policy's way."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _messages


def test_shown_is_the_repr_when_short():
    assert _messages.shown("db1") == "'db1'"
    assert _messages.shown(5432) == "5432"


def test_shown_cuts_a_long_string_and_says_its_length():
    assert _messages.shown("x" * 500, 20) == "'" + "x" * 19 + "... (500 characters)"
    assert _messages.shown(list(range(100)), 10) == "[0, 1, 2, ... (390 characters)"


def test_cut_keeps_short_text_and_says_the_length_of_long_text():
    assert _messages.cut("db.example.com") == "db.example.com"
    assert _messages.cut("a" * 300) == "a" * _messages.MESSAGE_VALUE_MAX + "... (300 characters)"
    assert _messages.cut(12, 1) == "1... (2 characters)"


def test_redact_masks_every_occurrence_of_the_secret():
    assert _messages.redact("password s3cret rejected (s3cret)", "s3cret") == "password ******** rejected (********)"
    assert _messages.redact(ValueError("no secret"), None) == "no secret"


def test_one_line_joins_every_run_of_whitespace():
    assert _messages.one_line("a\n  b\t\tc ") == "a b c"


def test_shown_value_quotes_a_string_on_one_line():
    assert _messages.shown_value("a\nb") == "'a\\nb'"


def test_shown_value_cuts_a_long_string_and_says_its_length():
    text = _messages.shown_value("y" * 100000)
    assert text == "'" + "y" * _messages.SHOWN_VALUE_CHARS + "'... (100000 characters)"


def test_shown_value_bounds_the_widening_of_escapes():
    text = _messages.shown_value("\x00" * 80, 10)
    assert text == ("'" + "\\x00" * 10)[:20] + "...... (80 characters)"


def test_shown_value_bounds_a_deep_or_long_container():
    assert _messages.shown_value(list(range(100))) == "[0, 1, 2, 3, 4, 5, ...]"
    assert _messages.shown_value({"a": [[[[[1]]]]]}) == "{'a': [[[...]]]}"


def test_shown_value_never_fails_on_a_bad_repr():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert _messages.shown_value(Broken()).startswith("<Broken")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("short\nmessage", "short message"),
        ("z" * 1000, "z" * (2 * _messages.SHOWN_VALUE_CHARS) + "..."),
    ],
)
def test_cut_line_puts_free_text_on_one_line_cut_short(text, expected):
    assert _messages.cut_line(text) == expected
