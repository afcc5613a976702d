# -*- coding: utf-8 -*-
"""What MariaDB and MySQL do differently (``_mysql/flavours.py``): detection, their own statements,
MariaDB's templates, without a server.
"""

import pytest
from _mysql_samples import (
    MARIADB,
    MYSQL_8,
    MYSQL_8_NO_PS,
    MYSQL_8_OLD,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import flavours as my_flavours


# ------------------------------------------------------------ detection
@pytest.mark.parametrize(
    "version, comment, name, parsed",
    [
        ("10.11.19-MariaDB-0+deb12u1", "Debian 12", "mariadb", (10, 11, 19)),
        ("5.5.5-10.6.12-MariaDB", "mariadb.org binary distribution", "mariadb", (5, 5, 5)),
        ("8.0.36", "MySQL Community Server - GPL", "mysql", (8, 0, 36)),
        ("8.4.0-commercial", "MySQL Enterprise Server - Commercial", "mysql", (8, 4, 0)),
        ("garbage", None, "mysql", (0, 0, 0)),
    ],
)
def test_detect(version, comment, name, parsed):
    flavour = my_flavours.detect(version, comment, 1)
    assert flavour.name == name
    assert flavour.version == parsed


@pytest.mark.parametrize(
    "flavour, statement",
    [
        (MARIADB, "SHOW ALL SLAVES STATUS"),  # every source of a multi-source replica
        (MYSQL_8, "SHOW REPLICA STATUS"),
        (MYSQL_8_OLD, "SHOW SLAVE STATUS"),  # SHOW REPLICA STATUS came with 8.0.22
    ],
)
def test_replica_status_query(flavour, statement):
    assert flavour.replica_status_query() == (statement, ())


def test_mariadb_templates_show_the_guard_without_values():
    templates = MARIADB.templates()
    assert any(t.startswith("BEGIN NOT ATOMIC") for t in templates)
    assert any("KILL QUERY ID" in t for t in templates)


def test_server_started_queries():
    sql, params = MARIADB.server_started_query()
    assert "UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS" in sql and params == ("UPTIME",)
    sql, params = MYSQL_8.server_started_query()
    assert "performance_schema.global_status" in sql and params == ("Uptime",)
    assert MYSQL_8_NO_PS.server_started_query() is None


def test_statement_timeouts():
    assert MARIADB.statement_timeout_query(30) == ("SET SESSION max_statement_time = %s", (30,))
    assert MYSQL_8.statement_timeout_query(30) == ("SET SESSION max_execution_time = %s", (30000,))
