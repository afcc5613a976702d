# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy's limits per host (``policy.limits``): how many sessions, and what share of them,
one run may end; fail closed. Pure, Python 3.8.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import NUMBER_TEXT_MAX, digits_value, is_int
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy_fields import check_keys

# Limits per host of a policy that sets none (docs/architecture.md, "Dry runs in the open"):
# a rule written too broadly cannot end every session of a fleet. A policy
# raises one with a number, or lifts it with UNLIMITED; null (or leaving it out) is the default.
DEFAULT_LIMITS = {"max_terminations": 100, "max_fraction": 0.9}
UNLIMITED = "unlimited"

LIMIT_KEYS = ("max_terminations", "max_fraction")


def _parse_max_terminations(value, field):
    number = None
    if is_int(value):
        number = value
    else:
        number = digits_value(value)
    if number is None or number < 0:
        raise PolicyError(field, value, f"expected a whole number >= 0 or {UNLIMITED!r}, got {shown_value(value)}")
    return number


def _parse_max_fraction(value, field):
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int of 400 digits
            number = None
    elif isinstance(value, str) and len(value) <= NUMBER_TEXT_MAX:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or math.isnan(number) or not 0 < number <= 1:
        raise PolicyError(
            field,
            value,
            f"expected a fraction above 0 and at most 1 (e.g. 0.5 for half) or {UNLIMITED!r}, got {shown_value(value)}",
        )
    return number


class Limits:
    """Fail-closed limits per host; None means lifted (the policy said UNLIMITED).

    `defaults`: the names (of LIMIT_KEYS) that the policy left to DEFAULT_LIMITS."""

    def __init__(self, max_terminations=None, max_fraction=None, defaults=()):
        self.max_terminations = max_terminations
        self.max_fraction = max_fraction
        self.defaults = tuple(defaults)

    def to_dict(self):
        """The limits in effect; a lifted one as UNLIMITED (so the mapping parses back to the same limits)."""
        return {name: UNLIMITED if getattr(self, name) is None else getattr(self, name) for name in LIMIT_KEYS}

    def shown(self):
        """The limits in effect and which of them are the defaults (results and reports)."""
        return dict(self.to_dict(), defaults=list(self.defaults))


def parse_limits(raw):
    field = "policy.limits"
    if raw is None:
        raw = {}
    check_keys(raw, LIMIT_KEYS, field)
    parsers = {"max_terminations": _parse_max_terminations, "max_fraction": _parse_max_fraction}
    values = {}
    defaults = []
    for name in LIMIT_KEYS:
        value = raw.get(name)
        if value is None:
            values[name] = DEFAULT_LIMITS[name]
            defaults.append(name)
        elif isinstance(value, str) and value.strip() == UNLIMITED:
            values[name] = None
        else:
            values[name] = parsers[name](value, f"{field}.{name}")
    return Limits(defaults=defaults, **values)
