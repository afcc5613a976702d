# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy's limits per host (module_utils/_limits.py): the defaults per key, lifted with
unlimited, the values refused naming the field."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._limits import DEFAULT_LIMITS, UNLIMITED, parse_limits
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from test_policy import with_top


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


def test_no_limits_are_the_defaults_and_say_so():
    limits = parse_limits(None)
    assert (limits.max_terminations, limits.max_fraction) == (100, 0.9) == tuple(DEFAULT_LIMITS.values())
    assert limits.shown()["defaults"] == ["max_terminations", "max_fraction"]
    lifted = parse_limits({"max_terminations": UNLIMITED, "max_fraction": " unlimited "})
    assert (lifted.max_terminations, lifted.max_fraction, lifted.defaults) == (None, None, ())


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"max_terminations": -1}, "policy.limits.max_terminations"),
        ({"max_terminations": "1.5"}, "policy.limits.max_terminations"),
        ({"max_terminations": True}, "policy.limits.max_terminations"),
        ({"max_fraction": 0}, "policy.limits.max_fraction"),
        ({"max_fraction": 1.5}, "policy.limits.max_fraction"),
        ({"max_fraction": "nan"}, "policy.limits.max_fraction"),
        ({"max_fraction": 10**400}, "policy.limits.max_fraction"),
        ({"max_sessions": 3}, "policy.limits.max_sessions"),
    ],
)
def test_a_bad_limit_fails_naming_the_field(raw, field):
    with pytest.raises(PolicyError) as caught:
        parse_limits(raw)
    assert caught.value.field == field
