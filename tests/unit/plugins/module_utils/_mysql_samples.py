# -*- coding: utf-8 -*-
"""Samples shared by the unit tests of ``_mysql/`` (flavours, rows, victims)."""

import datetime

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import flavours as my_flavours
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import rows as my_rows

MARIADB = my_flavours.detect("10.11.19-MariaDB-0+deb12u1", "Debian 12", 1)


MARIADB_104 = my_flavours.detect("10.4.30-MariaDB", "MariaDB Server", 1)


MYSQL_8 = my_flavours.detect("8.0.36", "MySQL Community Server - GPL", 1)


MYSQL_8_OLD = my_flavours.detect("8.0.21", "MySQL Community Server - GPL", 1)


MYSQL_8_NO_PS = my_flavours.detect("8.0.36", "MySQL Community Server - GPL", 0)


ALL_FLAVOURS = [MARIADB, MARIADB_104, MYSQL_8, MYSQL_8_OLD, MYSQL_8_NO_PS]


def flavour_id(flavour):
    """A flavour as a test id: mariadb-(10, 11, 19)-ps1."""
    return "%s-%s-ps%d" % (flavour.name, flavour.version, flavour.performance_schema)


def _placeholders_match(sql, params):
    return sql.count("%s") == len(params)


def _split_select(select):
    depth, part, parts = 0, "", []
    for char in select:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    return parts + [part]


NOW = datetime.datetime(2024, 5, 1, 8, 0, 0)


def _row(command="Sleep", elapsed_ms=2500, trx=None, superuser=0, info=None, query_id=10, event=None, **trx_events):
    """A list-query row; `trx`: INNODB_TRX's trx_started (a cache), `event`: the STATE of the
    thread's latest transaction event (None: it has none), `trx_events`: events_on, tid, seconds."""
    return (
        (
            7,
            "app",
            "127.0.0.1:5000",
            "appdb",
            command,
            "",
            elapsed_ms,
            info,
            query_id,
            trx,
            3.5 if trx else None,
            superuser,
            NOW,
        )
        + (None,) * 6
        + (
            trx_events.get("events_on", 1),
            trx_events.get("tid", 42),
            event,
            trx_events.get("seconds", 4.25 if event else None),
        )
    )


EXACT = None  # normalize_row's `unproven` when the listing read the transaction events


# ------------------------------------------------------------ the guarded kill (SQL)
def _victim(**changes):
    victim = my_rows.normalize_row(_row(), 1714550000)
    victim.update(changes)
    return victim


# ------------------------------------------------------------ the loop on statement events
def _bindable(n):
    return _victim(id=100 + n, query_id=1000 + n, key="k%d" % n, host="127.0.0.1:%d" % (5000 + n))


TRX_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_transactions_current")


def _waiter(kind, **changes):
    return _victim(
        command="Query",
        state="active",
        lock_kind=kind,
        lock_wait_seconds=12.0,
        **{GUARD_STILL_WAITING: True},
        **changes,
    )


# SHOW GRANTS FOR PUBLIC lines (MariaDB 10.11+), for the drain's tests.
PUBLIC_LINES = [
    "GRANT SELECT, INSERT ON `billing`.* TO PUBLIC",
    "GRANT UPDATE ON `bill\\_%`.* TO PUBLIC",
    "GRANT SELECT (`c ON x`), DELETE ON `billing`.`t` TO PUBLIC WITH GRANT OPTION",
    "GRANT EXECUTE ON PROCEDURE `billing`.`p` TO PUBLIC",
    "GRANT SELECT ON `other`.* TO PUBLIC",
    "GRANT SELECT ON `bill_ng`.`t` TO PUBLIC",
]
