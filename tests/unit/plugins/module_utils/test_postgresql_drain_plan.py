# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL drain's pure parts: identifiers, statement builders, the plan of the rights.

No database here: what the statements do on a server is tested in
tests/integration/test_postgresql_drain.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql_drain as pgd


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


def test_drain_query_is_one_transaction_with_the_record_around_the_changes():
    changes = pgd.plan_drain("bill%ing", info(item("PUBLIC"), item('o"dd', grantor="lead")), ["mig"])
    sql, params = pgd.drain_query([("bill%ing", changes), ("other", [])], "admin")
    statements = sql.split(";\n")
    assert statements[0].startswith("INSERT INTO dbhygiene.drain") and "%(db0)s" in statements[0]
    assert 'SET ROLE "lead"' in sql and 'REVOKE CONNECT ON DATABASE "bill%%ing" FROM "o""dd"' in sql
    assert 'SET ROLE "owner"' in sql and 'REVOKE CONNECT ON DATABASE "bill%%ing" FROM PUBLIC' in sql
    assert 'GRANT CONNECT ON DATABASE "bill%%ing" TO "mig"' in sql
    assert sql.count("RESET ROLE") == 3 and "COMMIT" not in sql and "BEGIN" not in sql
    assert statements[-1] == "SELECT count(*) FROM dbhygiene.drain"
    assert params["db0"] == "bill%ing" and params["db1"] == "other" and params["here"] == "admin"
    assert json.loads(params["changes0"]) == changes and json.loads(params["changes1"]) == []
    assert sql.index("UPDATE dbhygiene.drain") > sql.index("GRANT CONNECT")
    # each drained database points to the database of its record, in the same transaction
    assert 'ALTER DATABASE "bill%%ing" SET dbhygiene.drain_record = %(here)s' in statements
    assert 'ALTER DATABASE "other" SET dbhygiene.drain_record = %(here)s' in statements
    with pytest.raises(ValueError):
        pgd.drain_query([], "admin")


def test_undo_query_reverses_the_changes_last_first():
    changes = pgd.plan_drain("db", info(item("PUBLIC"), item("app", grantable=True)), ["mig"])
    sql, params = pgd.undo_query([("db", changes)])
    grant_mig_back = sql.index('REVOKE CONNECT ON DATABASE "db" FROM "mig"')
    app_back = sql.index('GRANT CONNECT ON DATABASE "db" TO "app" WITH GRANT OPTION')
    public_back = sql.index('GRANT CONNECT ON DATABASE "db" TO PUBLIC')
    assert grant_mig_back < app_back < public_back < sql.index("DELETE FROM dbhygiene.drain")
    assert sql.index("DELETE FROM dbhygiene.drain") < sql.index('ALTER DATABASE "db" RESET dbhygiene.drain_record')
    assert params == {"db0": "db"}
    sql, _params = pgd.undo_query([("db", changes)], gone=["db"])  # dropped: its settings went with it
    assert "ALTER DATABASE" not in sql


def test_end_one_query_names_the_session_by_its_key():
    sql, params = pgd.end_one_query({"id": 42, "key": "42@2026-01-02T03:04:05.123+00:00"}, "terminate")
    assert "pg_terminate_backend(pid)" in sql and "backend_start = %(started)s::timestamptz" in sql
    assert params == {"pid": 42, "started": "2026-01-02T03:04:05.123+00:00"}
    assert "pg_cancel_backend" in pgd.end_one_query({"key": "1@x"}, "cancel")[0]
    with pytest.raises(ValueError):
        pgd.end_one_query({"key": "nokey"}, "terminate")
    with pytest.raises(ValueError):
        pgd.end_one_query({"key": "1@x"}, "kill")


def test_restore_query_only_while_datacl_is_what_the_drain_left():
    sql, params = pgd.restore_query("db", None, "{=T/o}")
    assert "datacl::text IS NOT DISTINCT FROM %(after)s THEN 1" in sql and "%(before)s::aclitem[]" in sql
    assert params == {"db": "db", "before": None, "after": "{=T/o}"}
    # the recorded changes undone first (GRANT / REVOKE keep pg_shdepend right), then datacl byte for byte
    changes = pgd.plan_drain("db", info(item("PUBLIC")), ["mig"])
    sql, _params = pgd.restore_query("db", None, "{=T/o}", changes)
    statements = sql.split(";\n")
    assert statements[0].startswith("SELECT CASE WHEN datacl")
    revoke_mig = sql.index('REVOKE CONNECT ON DATABASE "db" FROM "mig"')
    public_back = sql.index('GRANT CONNECT ON DATABASE "db" TO PUBLIC')
    restore = sql.index("UPDATE pg_catalog.pg_database SET datacl")
    assert revoke_mig < public_back < restore < sql.index("DELETE FROM dbhygiene.drain")
    assert 'ALTER DATABASE "db" RESET dbhygiene.drain_record' in statements and statements[-1] == "SELECT 1"


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


def test_templates_have_no_values():
    templates = pgd.query_templates()
    assert all(isinstance(t, str) and t for t in templates)
    assert any("ACCOUNT" not in t and "REVOKE CONNECT" in t for t in templates)
