# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A drain / open's options (module_utils/_drain_request.py): checked before connecting, naming the
field and the value; the policy that picks the sessions, names taken literally, its protect, no
default limit; the argument spec against the doc fragment."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _drain_request,
    _planner,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from test_drain import options


def test_defaults_and_normalization():
    request = _drain_request.parse_request(options(databases=["billing", "billing", "other"], grace=5))
    assert request.databases == ["billing", "other"] and request.state == "drained" and request.grace == 5
    assert _drain_request.parse_request(options(grace=None)).grace == 30
    assert _drain_request.parse_request(options(grace="1m30s")).grace == 90


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"databases": []}, "databases", "at least one"),
        ({"databases": None}, "databases", "at least one"),
        ({"databases": "billing"}, "databases", "list"),
        ({"databases": [""]}, "databases[0]", "non-empty"),
        ({"databases": ["ok", 3]}, "databases[1]", "non-empty"),
        ({"databases": ["a\x00b"]}, "databases[0]", "NUL"),
        ({"databases": ["x" * 300]}, "databases[0]", "longer than"),
        ({"allow_users": ["  "]}, "allow_users[0]", "non-empty"),
        ({"state": "closed"}, "state", "drained, open"),
        ({"grace": "soon"}, "grace", "invalid duration"),
        ({"grace": "2h"}, "grace", "maximum"),
        ({"grace": -1}, "grace", "negative"),
        ({"wait_timeout": -1}, "wait_timeout", "or more"),
        ({"host_timeout": 0}, "host_timeout", "more than"),
        ({"grace": "4m", "wait_timeout": 60, "host_timeout": 300}, "host_timeout", "grace (240s) + wait_timeout"),
    ],
)
def test_bad_options_name_the_field_and_the_value(overrides, field, words):
    with pytest.raises(PolicyError) as caught:
        _drain_request.parse_request(options(**overrides))
    assert caught.value.field == field
    assert words in str(caught.value), str(caught.value)
    assert "policy.grace" not in str(caught.value)


def test_the_policy_matches_the_names_literally():
    request = _drain_request.parse_request(options(databases=["bill*", "a?[b"], allow_users=["mig*"]))
    policy = request.policy
    assert [r.action for r in policy.rules] == ["cancel_then_terminate"]
    with_users = _drain_request.drain_policy(["billing"], [], 5, users=["app*"])
    assert [r.name for r in with_users.rules] == ["drain", "drain-account"]
    # the locked logins' sessions on any database, or none
    assert with_users.match({"id": 1, "key": "1", "user": "app*", "database": None, "superuser": False})
    assert with_users.match({"id": 1, "key": "1", "user": "apple", "database": "x", "superuser": False}) is None

    def session(**fields):
        base = {"id": 1, "key": "1@x", "user": "app", "database": "bill*", "state": "idle", "superuser": False}
        base.update(fields)
        return base

    assert policy.match(session()) is not None
    assert policy.match(session(database="a?[b")) is not None
    assert policy.match(session(database="billing")) is None  # no glob: only the name itself
    assert policy.match(session(database="axb")) is None
    assert _drain_request._glob_literal("a*b?c[d]") == "a[*]b[?]c[[]d]"


def test_protect_allow_users_and_superusers():
    policy = _drain_request.parse_request(options(allow_users=["mig*"])).policy
    assert policy.protect.superusers is True
    assert policy.protect.protects({"user": "mig*", "database": "billing", "superuser": False})
    assert not policy.protect.protects({"user": "migrator", "database": "billing", "superuser": False})


def test_argument_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.dbhygiene.sessions.plugins.doc_fragments._drain import ModuleDocFragment

    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = _drain_request.drain_argument_spec()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default") or name == "grace", name


def test_the_drain_ends_every_session_on_its_databases_whatever_the_default_limits():
    # A change window asks for every session on its databases: 1 of 1, or 500, is not above a limit.
    policy = _drain_request.drain_policy(["billing"], [], 30)
    sessions = [{"id": n, "user": "app", "database": "billing", "state": "idle"} for n in range(500)]
    plan = _planner.plan(sessions, policy)
    assert plan.limit_error is None and len(plan.victims) == 500
    assert policy.limits.to_dict() == {"max_terminations": "unlimited", "max_fraction": "unlimited"}
