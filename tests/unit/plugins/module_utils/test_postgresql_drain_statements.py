# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL drain's statements (module_utils/_postgresql/drain_statements.py): identifiers,
parameters, one transaction each.

No database here: what the statements do on a server is tested in
tests/integration/test_postgresql_drain.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import drain as pgd
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import drain_statements as pgds
from test_postgresql_drain_plan import info, item


def test_drain_query_is_one_transaction_with_the_record_around_the_changes():
    changes = pgd.plan_drain("bill%ing", info(item("PUBLIC"), item('o"dd', grantor="lead")), ["mig"])
    sql, params = pgds.drain_query([("bill%ing", changes), ("other", [])], "admin")
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
        pgds.drain_query([], "admin")


def test_undo_query_reverses_the_changes_last_first():
    changes = pgd.plan_drain("db", info(item("PUBLIC"), item("app", grantable=True)), ["mig"])
    sql, params = pgds.undo_query([("db", changes)])
    grant_mig_back = sql.index('REVOKE CONNECT ON DATABASE "db" FROM "mig"')
    app_back = sql.index('GRANT CONNECT ON DATABASE "db" TO "app" WITH GRANT OPTION')
    public_back = sql.index('GRANT CONNECT ON DATABASE "db" TO PUBLIC')
    assert grant_mig_back < app_back < public_back < sql.index("DELETE FROM dbhygiene.drain")
    assert sql.index("DELETE FROM dbhygiene.drain") < sql.index('ALTER DATABASE "db" RESET dbhygiene.drain_record')
    assert params == {"db0": "db"}
    sql, _params = pgds.undo_query([("db", changes)], gone=["db"])  # dropped: its settings went with it
    assert "ALTER DATABASE" not in sql


def test_end_one_query_names_the_session_by_its_key():
    sql, params = pgds.end_one_query({"id": 42, "key": "42@2026-01-02T03:04:05.123+00:00"}, "terminate")
    assert "pg_terminate_backend(pid)" in sql and "backend_start = %(started)s::timestamptz" in sql
    assert params == {"pid": 42, "started": "2026-01-02T03:04:05.123+00:00"}
    assert "pg_cancel_backend" in pgds.end_one_query({"key": "1@x"}, "cancel")[0]
    with pytest.raises(ValueError):
        pgds.end_one_query({"key": "nokey"}, "terminate")
    with pytest.raises(ValueError):
        pgds.end_one_query({"key": "1@x"}, "kill")


def test_restore_query_only_while_datacl_is_what_the_drain_left():
    sql, params = pgds.restore_query("db", None, "{=T/o}")
    assert "datacl::text IS NOT DISTINCT FROM %(after)s THEN 1" in sql and "%(before)s::aclitem[]" in sql
    assert params == {"db": "db", "before": None, "after": "{=T/o}"}
    # the recorded changes undone first (GRANT / REVOKE keep pg_shdepend right), then datacl byte for byte
    changes = pgd.plan_drain("db", info(item("PUBLIC")), ["mig"])
    sql, _params = pgds.restore_query("db", None, "{=T/o}", changes)
    statements = sql.split(";\n")
    assert statements[0].startswith("SELECT CASE WHEN datacl")
    revoke_mig = sql.index('REVOKE CONNECT ON DATABASE "db" FROM "mig"')
    public_back = sql.index('GRANT CONNECT ON DATABASE "db" TO PUBLIC')
    restore = sql.index("UPDATE pg_catalog.pg_database SET datacl")
    assert revoke_mig < public_back < restore < sql.index("DELETE FROM dbhygiene.drain")
    assert 'ALTER DATABASE "db" RESET dbhygiene.drain_record' in statements and statements[-1] == "SELECT 1"


def test_templates_have_no_values():
    templates = pgds.query_templates()
    assert all(isinstance(t, str) and t for t in templates)
    assert any("ACCOUNT" not in t and "REVOKE CONNECT" in t for t in templates)
