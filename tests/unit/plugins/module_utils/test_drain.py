# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine-neutral drain: options checked before connecting, the policy that ends the
sessions, the merge of its two passes. What the drains do on a server is tested in
tests/integration/test_{postgresql,mysql}_drain.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _drain, _planner
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError


def options(**overrides):
    base = {
        "databases": ["billing"],
        "state": "drained",
        "allow_users": [],
        "grace": "30s",
        "wait_timeout": 10.0,
        "host_timeout": 300.0,
    }
    base.update(overrides)
    return base


def test_defaults_and_normalization():
    request = _drain.parse_request(options(databases=["billing", "billing", "other"], grace=5))
    assert request.databases == ["billing", "other"] and request.state == "drained" and request.grace == 5
    assert _drain.parse_request(options(grace=None)).grace == 30
    assert _drain.parse_request(options(grace="1m30s")).grace == 90


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
        _drain.parse_request(options(**overrides))
    assert caught.value.field == field
    assert words in str(caught.value), str(caught.value)
    assert "policy.grace" not in str(caught.value)


def test_the_policy_matches_the_names_literally():
    request = _drain.parse_request(options(databases=["bill*", "a?[b"], allow_users=["mig*"]))
    policy = request.policy
    assert [r.action for r in policy.rules] == ["cancel_then_terminate"]
    assert [r.action for r in request.terminate_policy.rules] == ["terminate"]

    def session(**fields):
        base = {"id": 1, "key": "1@x", "user": "app", "database": "bill*", "state": "idle", "superuser": False}
        base.update(fields)
        return base

    assert policy.match(session()) is not None
    assert policy.match(session(database="a?[b")) is not None
    assert policy.match(session(database="billing")) is None  # no glob: only the name itself
    assert policy.match(session(database="axb")) is None
    assert _drain._glob_literal("a*b?c[d]") == "a[*]b[?]c[[]d]"


def test_protect_allow_users_and_superusers():
    policy = _drain.parse_request(options(allow_users=["mig*"])).policy
    assert policy.protect.superusers is True
    assert policy.protect.protects({"user": "mig*", "database": "billing", "superuser": False})
    assert not policy.protect.protects({"user": "migrator", "database": "billing", "superuser": False})


def entry(key, **fields):
    base = {"id": int(key), "key": key, "user": "app", "database": "billing", "state": "idle"}
    base.update(fields)
    return base


def test_merge_of_the_two_passes():
    first = {
        "changed": True,
        "terminated": [entry("1")],
        "cancelled": [entry("2", state="active")],
        "not_ended": [entry("3", reason="protected"), entry("2", reason="still_present")],
        "summary": {"terminated": 1, "cancelled": 1},
    }
    second = {"changed": True, "terminated": [entry("2")], "not_ended": [entry("3", reason="protected")]}
    merged = _drain._merge(first, second)
    assert [e["key"] for e in merged["terminated"]] == ["1", "2"]
    assert [e["key"] for e in merged["cancelled"]] == ["2"]
    assert [(e["key"], e["reason"]) for e in merged["not_ended"]] == [("3", "protected")]
    assert merged["summary"]["terminated"] == 2 and merged["changed"] is True
    failed = _drain._merge(first, dict(second, failed=True, msg="boom"))
    assert failed["failed"] and failed["msg"] == "boom"


def test_closed_in_check_mode_is_what_it_would_be():
    record = [{"database": "a"}, {"database": "b"}]
    drained = _drain.parse_request(options(databases=["c"]))
    opened = _drain.parse_request(options(databases=["a"], state="open"))
    assert _drain._closed(record, drained, check_mode=True) == ["a", "b", "c"]
    assert _drain._closed(record, drained, check_mode=False) == ["a", "b"]
    assert _drain._closed(record, opened, check_mode=True) == ["b"]


def test_argument_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.dbhygiene.sessions.plugins.doc_fragments._drain import ModuleDocFragment

    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = _drain.drain_argument_spec()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default") or name == "grace", name


def _returned(module):
    import yaml

    return set(yaml.safe_load(module.RETURN))


def test_every_result_key_is_documented_in_both_modules():
    """RETURN is the drain role's contract: the keys run_drain returns, no more, no less."""
    from ansible_collections.dbhygiene.sessions.plugins.modules import mysql_drain, postgresql_drain

    common = {
        "state",
        "databases",
        "changes",
        "restored",
        "closed",
        "record",
        "terminated",
        "cancelled",
        "not_ended",
        "summary",
        "queries",
        "check_mode",
    }
    assert _returned(postgresql_drain) == common
    assert _returned(mysql_drain) == common | {"accounts_locked", "accounts_unlocked", "accounts_already_locked"}
    assert "skipped" not in _returned(mysql_drain)


def test_the_drain_ends_every_session_on_its_databases_whatever_the_default_limits():
    # A change window asks for every session on its databases: 1 of 1, or 500, is not above a limit.
    policy = _drain.drain_policy(["billing"], [], 30)
    sessions = [{"id": n, "user": "app", "database": "billing", "state": "idle"} for n in range(500)]
    plan = _planner.plan(sessions, policy)
    assert plan.limit_error is None and len(plan.victims) == 500
    assert policy.limits.to_dict() == {"max_terminations": "unlimited", "max_fraction": "unlimited"}
