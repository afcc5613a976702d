# -*- coding: utf-8 -*-
"""The statements common to both flavours (``_mysql/statements.py``: the listing, facts,
replication, the sweep lock, KILL, rights), without a server.
"""

import pytest
from _mysql_samples import (
    ALL_FLAVOURS,
    MARIADB,
    MARIADB_104,
    MYSQL_8,
    MYSQL_8_NO_PS,
    MYSQL_8_OLD,
    TRX_CONSUMERS,
    _placeholders_match,
    _split_select,
    flavour_id,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import grants as my_grants
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statements as my_statements


# ------------------------------------------------------------ list query
@pytest.mark.parametrize("flavour", ALL_FLAVOURS, ids=flavour_id)
def test_list_query_shape(flavour):
    sql, params = flavour.list_query()
    assert _placeholders_match(sql, params)
    assert sql.startswith("SELECT p.ID, p.USER, p.HOST")
    assert "p.ID <> CONNECTION_ID()" in sql
    assert "FROM information_schema.INNODB_TRX) AS t ON t.trx_mysql_thread_id = p.ID" in sql
    # program_name is read apart (attrs_query): joining session_connect_attrs is quadratic
    assert "session_connect_attrs" not in sql
    assert params[0] == 1024 and "program_name" not in params
    for user in my_statements.SYSTEM_USERS:
        assert user in params
    for command in ("Daemon", "Binlog Dump", "Binlog Dump GTID", "Slave_IO", "Slave_SQL"):
        assert command in params
    assert sql.count(" AS ") >= 3
    # exactly the columns normalize_row reads
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(my_statements.COLUMNS)


def test_mariadb_list_query_specifics():
    sql, dummy = MARIADB.list_query()
    assert "FROM information_schema.PROCESSLIST AS p" in sql
    assert "p.TIME_MS" in sql and "p.QUERY_ID" in sql
    assert "Super_priv = 'Y'" in sql and "mysql.user" in sql
    assert "global_grants" not in sql


def test_mysql8_list_query_specifics():
    sql, dummy = MYSQL_8.list_query()
    assert "FROM performance_schema.processlist AS p" in sql
    assert "p.TIME * 1000" in sql
    assert "p.QUERY_ID" not in sql
    assert "mysql.global_grants WHERE PRIV = 'SYSTEM_USER'" in sql


@pytest.mark.parametrize("flavour", [MYSQL_8_OLD, MYSQL_8_NO_PS])
def test_mysql8_falls_back_to_information_schema(flavour):
    assert "FROM information_schema.PROCESSLIST AS p" in flavour.list_query()[0]


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_list_query_without_optional_sources(flavour):
    sql, params = flavour.list_query(with_superusers=False)
    assert _placeholders_match(sql, params)
    assert "session_connect_attrs" not in sql and "mysql.user" not in sql
    assert "program_name" not in params


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_reread_query_takes_ids_as_parameters(flavour):
    sql, params = flavour.list_query(ids=[7, "8", 9])
    assert _placeholders_match(sql, params)
    assert "p.ID IN (%s, %s, %s)" in sql
    assert params[-3:] == (7, 8, 9)
    with pytest.raises(ValueError):
        flavour.list_query(ids=[])
    with pytest.raises(ValueError):
        flavour.list_query(ids=["1) OR (1=1"])


# ------------------------------------------------------------ kill
@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_kill_queries(flavour):
    assert flavour.kill_query("terminate", 42) == ("KILL CONNECTION %s", (42,))
    assert flavour.kill_query("cancel", "42") == ("KILL QUERY %s", (42,))
    with pytest.raises(ValueError):
        flavour.kill_query("drop", 42)
    with pytest.raises(ValueError):
        flavour.kill_query("terminate", "42; DROP DATABASE appdb")


# ------------------------------------------------------------ replication role
@pytest.mark.parametrize(
    "read_only, sources, role",
    [
        (1, 1, "replica"),
        (1, 2, "replica"),  # a multi-source replica
        (1, 0, "primary"),  # read-only, replicating from nothing: a primary made read-only
        (0, 1, "primary"),  # replicating and writable (a multi-primary ring): changes made there go on
        (0, 0, "primary"),
    ],
)
def test_server_role(read_only, sources, role):
    assert my_statements.server_role(read_only, sources) == role


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_replication_threads_query_takes_the_names_as_parameters(flavour):
    sql, params = flavour.replication_threads_query()
    assert sql.startswith("SELECT COUNT(*) FROM ") and sql.endswith(" IN %s")
    (names,) = params
    if flavour is MARIADB:
        assert "information_schema.PROCESSLIST" in sql and set(names) == {"Slave_IO", "Slave_SQL"}
    else:  # MySQL's processlist shows them as Connect / Query: its performance_schema names them
        assert "performance_schema.threads" in sql and "thread/sql/replica_io" in names
    assert flavour.read_only_query() == ("SELECT @@read_only", ())


def test_templates_have_no_values():
    for flavour in (MARIADB, MYSQL_8):
        templates = flavour.templates()
        assert "KILL CONNECTION %s" in templates and "KILL QUERY %s" in templates
        assert all("1024" not in t for t in templates)
        # the listing and the re-read as the driver runs them: with the transaction events where readable
        assert all("events_transactions_current" in t for t in templates[:2])
        assert not any("events_transactions_current" in t for t in flavour.templates(transactions=False)[:2])


# ------------------------------------------------------------ privileges
@pytest.mark.parametrize(
    "flavour, privileges, see, kill",
    [
        (MARIADB, {"PROCESS", "CONNECTION ADMIN"}, True, True),
        (MARIADB, {"PROCESS", "SUPER"}, True, True),
        (MARIADB, {"CONNECTION ADMIN"}, False, True),
        (MARIADB, {"ALL"}, True, True),
        (MARIADB, {"USAGE"}, False, False),
        (MARIADB_104, {"PROCESS", "CONNECTION ADMIN"}, True, False),
        (MYSQL_8, {"PROCESS", "CONNECTION_ADMIN"}, True, True),
        (MYSQL_8, {"PROCESS", "CONNECTION ADMIN"}, True, False),
        (MYSQL_8, {"PROCESS", "SUPER"}, True, True),
    ],
)
def test_rights(flavour, privileges, see, kill):
    assert flavour.can_see_all(privileges) is see
    assert flavour.can_kill(privileges) is kill


def test_grant_hints():
    account = my_grants.quote_account("hygiene@%")
    assert MARIADB.kill_grant(account) == "GRANT CONNECTION ADMIN ON *.* TO 'hygiene'@'%'"
    assert MARIADB_104.kill_grant(account) == "GRANT SUPER ON *.* TO 'hygiene'@'%'"
    assert MYSQL_8.kill_grant(account) == "GRANT CONNECTION_ADMIN ON *.* TO 'hygiene'@'%'"
    assert MARIADB.superuser_grants(account) == ["GRANT SELECT (User, Host, Super_priv) ON mysql.user TO 'hygiene'@'%'"]
    assert "GRANT SELECT ON mysql.global_grants TO 'hygiene'@'%'" in MYSQL_8.superuser_grants(account)


def test_the_list_query_reads_the_transaction_events_in_its_own_statement():
    sql, params = MARIADB.list_query(transactions=True)
    assert _placeholders_match(sql, params)
    assert "performance_schema.events_transactions_current" in sql and "INSTRUMENTED = 'YES'" in sql
    assert params[1:5] == TRX_CONSUMERS + ("transaction",)  # right after LEFT(p.INFO, %s)
    assert "events_transactions_current" not in MARIADB.list_query()[0]
    assert len(sql.split(" FROM ", maxsplit=1)[0].split(", ")) >= len(my_statements.COLUMNS)


# ------------------------------------------------------------ attributes, start, timeouts, lock
def test_attrs_query_is_linear_and_parameterised():
    sql, params = my_statements.Flavour.attrs_query()
    assert sql.startswith("SELECT PROCESSLIST_ID, ATTR_VALUE FROM performance_schema.session_connect_attrs")
    assert "JOIN" not in sql and params == ("program_name",)
    sql, params = my_statements.Flavour.attrs_query([3, "4"])
    assert "PROCESSLIST_ID IN (%s, %s)" in sql and params == ("program_name", 3, 4)
    with pytest.raises(ValueError):
        my_statements.Flavour.attrs_query([])


def test_sweep_lock_queries():
    sql, params = MARIADB.lock_query(5, 30)
    assert sql == "SET STATEMENT max_statement_time = %s FOR SELECT GET_LOCK(%s, %s)"
    assert params == (36, "dbhygiene.sessions.sweep", 5.0)
    sql, params = MYSQL_8.lock_query(2.5, 30)
    assert sql == "SELECT /*+ MAX_EXECUTION_TIME(33000) */ GET_LOCK(%s, %s)"
    assert params == ("dbhygiene.sessions.sweep", 3)
    assert MARIADB.unlock_query() == ("SELECT RELEASE_LOCK(%s)", ("dbhygiene.sessions.sweep",))
