# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL drain's plan of the rights (module_utils/_postgresql/drain.py, its pure parts).

No database here: what the statements do on a server is tested in
tests/integration/test_postgresql_drain.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import drain as pgd


def item(grantee, grantor="owner", grantable=False, superuser=False):
    return {"grantee": grantee, "grantor": grantor, "grantable": grantable, "superuser": superuser}


def info(*items, owner="owner", acl="{...}"):
    return {"acl": acl, "owner": owner, "items": list(items)}


def test_plan_revokes_every_holder_but_superusers_and_allowed_and_grants_the_allowed():
    found = info(item("PUBLIC"), item("owner"), item("app"), item("postgres", superuser=True), item("mig"))
    changes = pgd.plan_drain("billing", found, ["mig", "other"])
    assert [(c["account"], c["change"], c["grantor"]) for c in changes] == [
        ("PUBLIC", "revoked", "owner"),
        ("owner", "revoked", "owner"),
        ("app", "revoked", "owner"),
        ("other", "granted", "owner"),
    ]
    assert all(c["right"] == "CONNECT" and c["databases"] == ["billing"] for c in changes)
    assert changes[0]["reason"] == "every role held CONNECT on billing"
    assert changes[-1]["reason"].startswith("allow_users: other")


def test_plan_revokes_a_delegated_grant_before_the_grant_it_depends_on():
    found = info(
        item("lead", grantable=True),
        item("PUBLIC"),
        item("deputy", grantor="lead", grantable=True),
        item("temp", grantor="deputy"),
    )
    changes = pgd.plan_drain("billing", found, [])
    assert [c["account"] for c in changes] == ["temp", "deputy", "lead", "PUBLIC"]
    assert [c["with_grant_option"] for c in changes] == [False, True, True, False]


def test_plan_of_a_drained_database_is_empty():
    assert pgd.plan_drain("billing", info(item("mig")), ["mig"]) == []
    assert pgd.plan_drain("billing", info(item("postgres", superuser=True)), []) == []


def test_apply_changes_and_the_diff_lines():
    items = [item("PUBLIC"), item("app", grantable=True)]
    changes = pgd.plan_drain("db", info(*items), ["mig"])
    after = pgd.apply_changes(items, changes)
    assert [i["grantee"] for i in after] == ["mig"]
    assert pgd.holders_line("db", items) == "db: CONNECT PUBLIC (by owner), app* (by owner)\n"
    assert pgd.holders_line("db", []) == "db: CONNECT superusers only\n"
    undone = [pgd.undone(c) for c in reversed(changes)]
    assert [(c["account"], c["change"]) for c in undone] == [
        ("mig", "revoked"),
        ("app", "granted"),
        ("PUBLIC", "granted"),
    ]
    assert pgd.apply_changes(after, undone) == [item("app", grantable=True), item("PUBLIC")]


def test_rows_and_record_entries():
    rows = [("db", None, "o", json.dumps([["PUBLIC", "o", False, False], ["su", "o", True, True]]))]
    assert pgd.database_rows(rows) == {
        "db": {"acl": None, "owner": "o", "items": [item("PUBLIC", "o"), item("su", "o", True, True)]}
    }
    import datetime

    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    [entry] = pgd.record_entries([("db", at, "admin", None, "{=T/o}", True, "[]")])
    assert entry["drained_at"].startswith("2026-01-02T03:04:05") and entry["complete"] and entry["exact"]
    assert entry["acl_before"] is None and entry["changes"] == []
