# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB drain's statements (``_mysql/drain_statements.py``): builders, values as
parameters, the grants of PUBLIC. No database here: tests/integration/test_mysql_drain.py runs them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from _mysql_samples import PUBLIC_LINES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import drain_statements as my_drain_statements


@pytest.mark.parametrize("flavour", ["mariadb", "mysql"])
def test_builders(flavour):
    sql, params = my_drain_statements.accounts_query(flavour)
    assert "Select_priv = 'Y'" in sql and params == {}
    assert ("global_priv" in sql) == (flavour == "mariadb") and ("SYSTEM_USER" in sql) == (flavour == "mysql")
    assert "roles_mapping" in my_drain_statements.role_edges_query(flavour)[0] or flavour == "mysql"
    templates = my_drain_statements.query_templates(flavour)
    assert (my_drain_statements.strip_unlock_key_query("u", "h")[0] in templates) == (flavour == "mariadb")
    with pytest.raises(ValueError):
        my_drain_statements.accounts_query("oracle")


def test_statement_builders_pass_values_as_parameters():
    hostile = "x'; DROP USER root; --"
    assert my_drain_statements.lock_query(hostile, "%") == (
        "ALTER USER %(user)s@%(host)s ACCOUNT LOCK",
        {"user": hostile, "host": "%"},
    )
    assert my_drain_statements.unlock_query("u", "h")[0].endswith("ACCOUNT UNLOCK")
    sql, params = my_drain_statements.holders_query(hostile)
    assert "%(db)s LIKE Db" in sql and params == {"db": hostile} and hostile not in sql
    sql, params = my_drain_statements.record_account_query("db", "u", "h", "pending", None, "r" * 2000)
    assert len(params["reason"]) == 1000 and params["lock_key"] is None and "INSERT IGNORE" in sql
    sql, params = my_drain_statements.strip_unlock_key_query("u", "h")
    assert params["suffix"] == ',"account_locked":false}' and "RIGHT(Priv" in sql
    assert [q[1] for q in my_drain_statements.forget_queries("db")] == [{"db": "db"}, {"db": "db"}]
    assert my_drain_statements.mark_locked_query("u", "h")[0].endswith("AND status = 'pending'")


def test_the_grants_of_public_on_a_database():
    # `bill\\_%`: bill, a literal _, anything (not billing)
    assert my_drain_statements.public_grants_on(PUBLIC_LINES, "billing") == [
        PUBLIC_LINES[0],
        PUBLIC_LINES[2],
        PUBLIC_LINES[3],
    ]
    assert my_drain_statements.public_grants_on(PUBLIC_LINES, "bill_x") == [PUBLIC_LINES[1]]
    assert my_drain_statements.public_grants_on(PUBLIC_LINES, "billxng") == []  # a table-level grant is no pattern
    grant = my_drain_statements.parse_public_grant(PUBLIC_LINES[2])
    assert grant == {
        "privileges": "SELECT (`c ON x`), DELETE",
        "target": "`billing`.`t`",
        "database": "billing",
        "schema_level": False,
        "grant_option": True,
    }
    assert my_drain_statements.parse_public_grant("GRANT USAGE ON *.* TO PUBLIC") is None


def test_revoke_and_restore_of_a_grant_of_public():
    assert my_drain_statements.revoke_public_queries(PUBLIC_LINES[2]) == [
        ("REVOKE SELECT (`c ON x`), DELETE ON `billing`.`t` FROM PUBLIC", {}),
        ("REVOKE GRANT OPTION ON `billing`.`t` FROM PUBLIC", {}),
    ]
    # a % is doubled: the statements go with parameters
    assert my_drain_statements.revoke_public_queries(PUBLIC_LINES[1]) == [
        ("REVOKE UPDATE ON `bill\\_%%`.* FROM PUBLIC", {})
    ]
    assert my_drain_statements.restore_public_query(PUBLIC_LINES[1]) == ("GRANT UPDATE ON `bill\\_%%`.* TO PUBLIC", {})
    with pytest.raises(ValueError):
        my_drain_statements.revoke_public_queries("GRANT SELECT ON `x`.* TO 'app'@'%'")
