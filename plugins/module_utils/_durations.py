# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations as the collection reads them: the policy's conditions and grace, the drain's
grace, the timeouts' values, the report thresholds. Pure, Python 3.8.

``parse_duration(value, field, maximum)`` takes ``45s``, ``30m``, ``1h30m``, ``2d``,
``1d2h3m4s`` (units d, h, m, s at most once each, in that order) or a whole number of seconds
(an int, a float without fraction such as ``30.0``, or a digit string). Surrounding blanks are
ignored. Refused, with a PolicyError naming the field and the value: booleans, negatives,
fractions of a second, ``nan`` / ``inf``, and anything above ``maximum`` (``MAX_DURATION``, 366
days, unless the field says less: a grace is at most ``MAX_GRACE``, 1 hour).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import math
import re

from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value

# Upper bounds: a condition older than a year is a typo, and grace is a wait of the
# module itself (bounded again by the run's own deadlines).
MAX_DURATION = 366 * 86400
MAX_GRACE = 3600
# Longest duration or number text worth reading ("1d23h59m59s" is 11): longer is refused
# before int() sees it (Python 3.11+ refuses int() of 4,300+ digits with a ValueError).
NUMBER_TEXT_MAX = 40
_DURATION_HINT = "use 45s, 30m, 1h30m, 2d or a whole number of seconds"
_DURATION_RE = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?\Z")
_DIGITS_RE = re.compile(r"^[0-9]+\Z")
_DURATION_UNITS = (86400, 3600, 60, 1)


def is_int(value: object) -> bool:
    """An int that is not a bool (True is not a number of anything here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def digits_value(value: object) -> int | None:
    """The whole number a text of digits says (blanks around it allowed, at most
    NUMBER_TEXT_MAX characters), or None when `value` is no such text."""
    if isinstance(value, str) and len(value) <= NUMBER_TEXT_MAX and _DIGITS_RE.match(value.strip()):
        return int(value.strip())
    return None


def human_duration(seconds: int) -> str:
    """Whole seconds as the shortest duration text (``1h30m``, ``0s``)."""
    parts: list[str] = []
    for unit, name in zip(_DURATION_UNITS, "dhms"):
        if seconds >= unit or (unit == 1 and not parts):
            parts.append(f"{seconds // unit}{name}")
            seconds %= unit
    return "".join(parts)


def _duration_seconds(value: object) -> tuple[int | None, str | None]:
    """Seconds from a duration value, or (None, why not) when it is not one."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, "a duration must be a finite number of seconds"
        if value != int(value):
            return None, "fractions of a second are not allowed"
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            return None, "negative durations are not allowed"
        return value, None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > NUMBER_TEXT_MAX:
            return None, f"longer than {NUMBER_TEXT_MAX} characters"
        if _DIGITS_RE.match(text):
            return int(text), None
        found = _DURATION_RE.match(text)
        if text and found and any(found.groups()):
            parts = zip(found.groups(), _DURATION_UNITS)
            return sum(int(part) * unit for part, unit in parts if part is not None), None
    return None, None


def parse_duration(value: object, field: str, maximum: int = MAX_DURATION) -> int:
    """Seconds (int, 0 to ``maximum``) from ``30m``-style text or a whole number of seconds."""
    seconds, why = _duration_seconds(value)
    if seconds is None:
        hint = f"{_DURATION_HINT}; {why}" if why else _DURATION_HINT
        raise PolicyError(field, value, f"invalid duration {shown_value(value)} ({hint})")
    if seconds > maximum:
        raise PolicyError(
            field,
            value,
            f"duration {shown_value(value)} is above the maximum for this field, "
            f"{human_duration(maximum)} ({maximum} seconds)",
        )
    return seconds
