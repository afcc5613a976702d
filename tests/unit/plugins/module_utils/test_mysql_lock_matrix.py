# -*- coding: utf-8 -*-
"""Lock waits in the MySQL/MariaDB listing (``_mysql/locks.py``): the metadata-lock matrix, the
joins, the records' lock fields, without a server.
"""

import pytest
from _mysql_samples import (
    ALL_FLAVOURS,
    MARIADB,
    MYSQL_8,
    MYSQL_8_NO_PS,
    NOW,
    _placeholders_match,
    _row,
    _split_select,
    flavour_id,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import locks as my_locks
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import rows as my_rows
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import statements as my_statements


# ------------------------------------------------------------ lock waits
@pytest.mark.parametrize("flavour", ALL_FLAVOURS, ids=flavour_id)
def test_the_listing_reads_the_lock_waits_in_the_same_statement(flavour):
    sql, params = flavour.list_query()
    mdl_condition, mdl_params = my_locks.mdl_conflicts_condition()
    assert _placeholders_match(sql, params)
    # whether a thread waits for an InnoDB lock, and since when: INNODB_TRX, joined anyway
    assert "t.trx_state = 'LOCK WAIT'" in sql and "t.trx_wait_started" in sql
    # metadata-lock waits: pending requests, and the conflicting locks on the same object, grouped
    # per object, status and type (one lookup per waiter and group, not one pair per two locks)
    assert "FROM performance_schema.metadata_locks AS w" in sql and "w.LOCK_STATUS = 'PENDING'" in sql
    assert "GROUP BY l.OBJECT_TYPE, object_schema, object_name, l.LOCK_STATUS, l.LOCK_TYPE) AS g" in sql
    assert "g.object_name = IFNULL(w.OBJECT_NAME, '')" in sql
    assert mdl_condition in sql and "ON m.waiter_id = p.ID" in sql
    assert "(SELECT DISTINCT THREAD_ID, PROCESSLIST_ID FROM performance_schema.threads) AS wt" in sql
    # our own sweep lock is not a lock wait; the values are parameters
    assert my_locks.SWEEP_LOCK in params and my_locks.SWEEP_LOCK not in sql and my_locks.MDL_USER_LOCK in params
    # derived tables, each read once: no correlated subquery per thread
    assert "(SELECT" not in sql.split(" FROM ", 1)[0]
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(my_statements.COLUMNS)


def test_row_lock_waits_per_flavour():
    sql = MARIADB.list_query()[0]
    assert "FROM information_schema.INNODB_LOCK_WAITS AS w" in sql
    assert "FROM information_schema.INNODB_TRX) AS b ON b.trx_id = w.blocking_trx_id" in sql
    assert "ON rw.trx_id = t.trx_id" in sql and "data_lock_waits" not in sql
    sql = MYSQL_8.list_query()[0]
    assert "FROM performance_schema.data_lock_waits AS w" in sql and "INNODB_LOCK_WAITS" not in sql
    assert "rt.THREAD_ID = w.REQUESTING_THREAD_ID" in sql and "bt.THREAD_ID = w.BLOCKING_THREAD_ID" in sql
    assert "ON rw.waiter_id = p.ID" in sql
    # MySQL without performance_schema: waiters (INNODB_TRX) but not on whom
    sql = MYSQL_8_NO_PS.list_query()[0]
    assert "data_lock_waits" not in sql and "INNODB_LOCK_WAITS" not in sql and "t.trx_wait_started" in sql


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_lock_sources_the_login_cannot_read_are_left_out(flavour):
    full = flavour.list_query()[0]
    for row_locks, metadata_locks in ((False, True), (True, False), (False, False)):
        sql, params = flavour.list_query(row_locks=row_locks, metadata_locks=metadata_locks)
        assert _placeholders_match(sql, params)
        assert ("AS rw ON" in sql) is row_locks and ("metadata_locks" in sql) is metadata_locks
        select = sql[len("SELECT ") : sql.index(" FROM ")]
        assert len(list(_split_select(select))) == len(my_statements.COLUMNS)
        assert len(sql) < len(full)


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_the_guard_reread_reads_the_lock_waits_only_when_asked(flavour):
    sql, params = flavour.list_query(ids=[7], row_locks=False, metadata_locks=False)
    assert _placeholders_match(sql, params)
    assert "metadata_locks" not in sql and "AS rw ON" not in sql and my_locks.SWEEP_LOCK not in params
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(my_statements.COLUMNS)
    # a waiter planned by waiting_longer_than: does it still wait? (MySQL's re-read before its KILL)
    sql, params = flavour.list_query(ids=[7])
    assert _placeholders_match(sql, params) and "metadata_locks" in sql and params[-1] == 7


def test_lock_probes():
    sql, params = MARIADB.metadata_locks_probe()
    assert "performance_schema.metadata_locks" in sql and "PROCESSLIST_ID = CONNECTION_ID()" in sql and not params
    assert MARIADB.row_lock_waits_probe() is None  # INNODB_LOCK_WAITS: PROCESS, as the listing
    sql, params = MYSQL_8.row_lock_waits_probe()
    assert "performance_schema.data_lock_waits" in sql and "performance_schema.threads" in sql and "LIMIT 0" in sql


def test_templates_show_the_lock_joins_without_values():
    for flavour in (MARIADB, MYSQL_8):
        listing = flavour.templates()[0]
        assert "metadata_locks" in listing and my_locks.SWEEP_LOCK not in listing
        assert "metadata_locks" not in flavour.templates(metadata_locks=False)[0]


MDL_OBJECT_TYPES = [t for t in my_locks.MDL_GRANTED_CONFLICTS if not t.startswith("BACKUP_")]


def test_metadata_lock_compatibility_is_symmetric_outside_the_backup_namespace():
    for requested in MDL_OBJECT_TYPES:
        for held in MDL_OBJECT_TYPES:
            assert (held in my_locks.MDL_GRANTED_CONFLICTS[requested]) == (
                requested in my_locks.MDL_GRANTED_CONFLICTS[held]
            ), (
                requested,
                held,
            )


def test_pending_conflicts_are_granted_conflicts():
    # sql/mdl.cc [INV2]: a queued lock that goes first would also block the request once granted
    for requested, pending in my_locks.MDL_PENDING_CONFLICTS.items():
        assert set(pending) <= set(my_locks.MDL_GRANTED_CONFLICTS[requested]), requested
    for conflicts in list(my_locks.MDL_GRANTED_CONFLICTS.values()) + list(my_locks.MDL_PENDING_CONFLICTS.values()):
        assert set(conflicts) <= set(my_locks.MDL_GRANTED_CONFLICTS)


@pytest.mark.parametrize(
    "requested, status, held, blocks",
    [
        # ALTER TABLE (asks EXCLUSIVE) behind a transaction that read the table, or wrote to it
        ("EXCLUSIVE", "GRANTED", "SHARED_READ", True),
        ("EXCLUSIVE", "GRANTED", "SHARED_WRITE", True),
        ("EXCLUSIVE", "PENDING", "SHARED_READ", False),  # an EXCLUSIVE request goes first
        # a SELECT queued behind that ALTER: the waiting EXCLUSIVE goes first, readers do not block it
        ("SHARED_READ", "PENDING", "EXCLUSIVE", True),
        ("SHARED_READ", "GRANTED", "SHARED_READ", False),
        ("SHARED_READ", "GRANTED", "SHARED_UPGRADABLE", False),  # the ALTER's own first lock
        ("SHARED_READ", "GRANTED", "SHARED_NO_READ_WRITE", True),  # LOCK TABLES ... WRITE
        ("SHARED_WRITE", "GRANTED", "SHARED_READ_ONLY", True),  # LOCK TABLES ... READ
        ("SHARED_WRITE", "GRANTED", "SHARED_WRITE", False),
        ("SHARED_UPGRADABLE", "GRANTED", "SHARED_UPGRADABLE", True),  # two ALTERs of one table
        ("SHARED_HIGH_PRIO", "PENDING", "EXCLUSIVE", False),  # SHOW / I_S reads jump the queue
        # GET_LOCK: MariaDB asks SHARED_NO_WRITE, MySQL EXCLUSIVE
        ("SHARED_NO_WRITE", "GRANTED", "SHARED_NO_WRITE", True),
        ("EXCLUSIVE", "GRANTED", "EXCLUSIVE", True),
        # schema / global scope
        ("SHARED", "GRANTED", "INTENTION_EXCLUSIVE", True),
        ("INTENTION_EXCLUSIVE", "GRANTED", "INTENTION_EXCLUSIVE", False),
        # MariaDB's backup lock: FLUSH TABLES WITH READ LOCK left open blocks every write
        ("BACKUP_TRANS_DML", "GRANTED", "BACKUP_FTWRL2", True),
        ("BACKUP_DDL", "GRANTED", "BACKUP_FTWRL1", True),
        ("BACKUP_TRANS_DML", "GRANTED", "BACKUP_DDL", False),
        ("BACKUP_FTWRL1", "GRANTED", "BACKUP_TRANS_DML", True),
        # types this table does not know make no edge, never a wrong one
        ("SOMETHING_NEW", "GRANTED", "EXCLUSIVE", False),
        ("EXCLUSIVE", "GRANTED", "SOMETHING_NEW", False),
        ("EXCLUSIVE", "VICTIM", "SHARED_READ", False),
    ],
)
def test_metadata_lock_conflicts(requested, status, held, blocks):
    assert my_locks.mdl_blockers(f"{requested} {status} {held} 31") == ([31] if blocks else [])


def test_the_listing_asks_the_server_for_conflicting_locks_only():
    sql, params = my_locks.mdl_conflicts_condition()
    assert _placeholders_match(sql, params)
    assert "g.LOCK_STATUS = 'GRANTED'" in sql and "g.LOCK_STATUS = 'PENDING'" in sql
    assert "FIND_IN_SET(g.LOCK_TYPE, ELT(FIELD(w.LOCK_TYPE" in sql
    granted = len(my_locks.MDL_GRANTED_CONFLICTS)
    names, lists = params[:granted], params[granted : 2 * granted]
    # FIELD() position i of a requested type picks list i: its conflicting types, comma separated
    assert dict(zip(names, lists)) == dict((k, ",".join(v)) for k, v in my_locks.MDL_GRANTED_CONFLICTS.items())
    pending = params[2 * granted :]
    assert dict(zip(pending[: len(pending) // 2], pending[len(pending) // 2 :])) == dict(
        (k, ",".join(v)) for k, v in my_locks.MDL_PENDING_CONFLICTS.items()
    )
    assert all("'" not in p and " " not in p for p in params)


def test_mdl_blockers_as_the_server_returns_them():
    # an ALTER TABLE (39) waits behind a transaction (36) and two UPDATEs (37, 38); a SELECT (40) behind it
    # (one item per status and type of the locks on the object, with the ids of their threads)
    alter = "EXCLUSIVE GRANTED SHARED_READ 36,EXCLUSIVE GRANTED SHARED_WRITE 38 36 37,EXCLUSIVE PENDING SHARED_READ 40"
    select = (
        "SHARED_READ GRANTED SHARED_READ 36,SHARED_READ GRANTED SHARED_UPGRADABLE 39,SHARED_READ GRANTED "
        "SHARED_WRITE 36 37 38,SHARED_READ PENDING EXCLUSIVE 39"
    )
    assert my_locks.mdl_blockers(alter) == [36, 37, 38]
    assert my_locks.mdl_blockers(select.encode()) == [39]
    assert (
        my_locks.mdl_blockers(None) == []
        and my_locks.mdl_blockers("") == []
        and my_locks.mdl_blockers("garbage, x y") == []
    )


def _lock_row(elapsed_ms=2500, row=None, mdl=None, thread_id=7):
    """A list-query row with lock columns: row=(waiting, seconds, blockers), mdl=(pending, user_lock, holders)."""
    base = list(_row(command="Query", elapsed_ms=elapsed_ms, trx=NOW if row else None))
    base[0] = thread_id
    return tuple(base[:13]) + tuple(row or (None, None, None)) + tuple(mdl or (None, None, None)) + tuple(base[19:])


def test_records_of_sessions_not_waiting():
    for row in (_row(), _lock_row(), _lock_row(row=(0, None, None))):
        record = my_rows.normalize_row(row)
        assert record["blocked_by"] == [] and record["lock_wait_seconds"] is None and record["lock_kind"] is None


def test_records_of_innodb_lock_waits():
    record = my_rows.normalize_row(_lock_row(row=(1, 1.23456, "9,5,9")))
    assert record["blocked_by"] == [5, 9] and record["lock_kind"] == "row"
    assert record["lock_wait_seconds"] == 1.235
    # never longer than the statement that waits
    assert my_rows.normalize_row(_lock_row(elapsed_ms=800, row=(1, 3.0, "5")))["lock_wait_seconds"] == 0.8
    # a waiter whose blocker the login cannot tell (MySQL without performance_schema): waiting, on no one
    record = my_rows.normalize_row(_lock_row(row=(1, 2.0, None)))
    assert record["blocked_by"] == [] and record["lock_wait_seconds"] == 2.0 and record["lock_kind"] == "row"
    # no wait start: the statement's age
    assert my_rows.normalize_row(_lock_row(row=(1, None, "5")))["lock_wait_seconds"] == 2.5
    # a recovered XA transaction holds locks under thread id 0: kept, as any holder not listed
    assert my_rows.normalize_row(_lock_row(row=(1, 2.0, b"0,12")))["blocked_by"] == [0, 12]


def test_records_of_metadata_lock_waits():
    record = my_rows.normalize_row(_lock_row(mdl=("EXCLUSIVE", 0, "EXCLUSIVE GRANTED SHARED_READ 36")))
    assert record["blocked_by"] == [36] and record["lock_kind"] == "metadata"
    assert record["lock_wait_seconds"] == 2.5  # the waiting statement's age
    record = my_rows.normalize_row(_lock_row(mdl=("SHARED_NO_WRITE", 1, "SHARED_NO_WRITE GRANTED SHARED_NO_WRITE 12")))
    assert record["blocked_by"] == [12] and record["lock_kind"] == "user_lock"
    # waiting on a lock whose holder is not a client thread (or of a type not in the table): on no one
    record = my_rows.normalize_row(_lock_row(mdl=("BACKUP_NEW", 0, None)))
    assert record["blocked_by"] == [] and record["lock_wait_seconds"] == 2.5 and record["lock_kind"] == "metadata"
    # performance_schema is live, INNODB_TRX a cache up to 100 ms old: the metadata lock wins
    record = my_rows.normalize_row(
        _lock_row(row=(1, 2.0, "5"), mdl=("EXCLUSIVE", 0, "EXCLUSIVE GRANTED SHARED_READ 36"))
    )
    assert record["blocked_by"] == [36] and record["lock_kind"] == "metadata"
    # a thread never waits on itself
    assert my_rows.normalize_row(_lock_row(row=(1, 2.0, "7,5")))["blocked_by"] == [5]
