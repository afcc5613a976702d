# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a message quotes a value, cuts free text, and keeps a secret out: the one home.

Private to the collection. Pure, no import beyond the standard library (Python 3.8).

Two quotings, kept apart because the messages users see differ:

* ``shown(value, limit)``: the drivers' and the change windows' (option values, names read from a
  server): ``repr(value)``, cut after ``limit`` characters of it with the full length said.
* ``shown_value(value, chars)``: the policy's (a policy value can be a 100 KB string or a deep
  mapping): on one line, a string's first ``chars`` characters quoted and escaped (its length said
  when cut), anything else through a bounded ``reprlib`` (never fails on a value's repr).

And two cuttings of free text (an exception's message, a host name):

* ``cut(text, limit)``: as it is, cut after ``limit`` characters with the full length said;
* ``cut_line(text)``: on one line (``one_line``), cut after ``2 * SHOWN_VALUE_CHARS`` with ``...``.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import reprlib
from typing import Any

MESSAGE_VALUE_MAX = 200  # characters of a user's value shown in a message, by default (shown, cut)
SHOWN_VALUE_CHARS = 80  # how much of a policy value a message quotes (shown_value, cut_line)


def shown(value: Any, limit: int = MESSAGE_VALUE_MAX) -> str:
    """repr() of a user's value for a message, cut to about `limit` characters (the full length said)."""
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(value) if isinstance(value, str) else len(text)} characters)"
    return text


def cut(text: Any, limit: int = MESSAGE_VALUE_MAX) -> str:
    """`text` for a message, cut to about `limit` characters (the full length said)."""
    whole = str(text)
    return whole if len(whole) <= limit else f"{whole[:limit]}... ({len(whole)} characters)"


def redact(text: Any, secret: Any) -> str:
    """`text` as a str without `secret` in it, whatever a driver put in its message."""
    clean = str(text)
    if secret:
        clean = clean.replace(str(secret), "********")
    return clean


def one_line(text: Any) -> str:
    """`text` as a str on one line (every run of whitespace one space)."""
    return " ".join(str(text).split())


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel = 3
    bounded.maxstring = SHOWN_VALUE_CHARS
    bounded.maxother = SHOWN_VALUE_CHARS
    bounded.maxlong = SHOWN_VALUE_CHARS
    bounded.maxdict = bounded.maxlist = bounded.maxtuple = bounded.maxset = bounded.maxfrozenset = 6
    return bounded


_REPR = _bounded_repr()


def shown_value(value: Any, chars: int = SHOWN_VALUE_CHARS) -> str:
    """A value as quoted in messages: on one line, strings quoted and escaped, cut
    short (a 100 KB value shows its first characters and its length)."""
    if isinstance(value, str):
        text = str.__repr__(value[:chars])
        if len(text) > 2 * chars:  # escapes (\x00, \U0010ffff) widen it
            text = text[: 2 * chars] + "..."
        if len(value) > chars:
            text += f"... ({len(value)} characters)"
        return text
    try:
        text = _REPR.repr(value)
    except Exception:  # pylint: disable=broad-exception-caught  # a message must not fail on a value's repr
        text = f"<{type(value).__name__}>"
    if len(text) > 2 * chars:
        text = text[: 2 * chars] + "..."
    return text


def cut_line(text: Any) -> str:
    """Free text (an exception's message) on one line, cut short."""
    line = one_line(text)
    if len(line) > 2 * SHOWN_VALUE_CHARS:
        line = line[: 2 * SHOWN_VALUE_CHARS] + "..."
    return line
