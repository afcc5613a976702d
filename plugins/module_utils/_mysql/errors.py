# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PyMySQL, imported when it is there, and the error codes the MySQL / MariaDB driver reacts to.

Private to the collection. Importable without PyMySQL (``HAS_PYMYSQL`` says whether it is
there), so that the modules can report a missing library cleanly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

# What the driver files import from here: the library itself among them (its module, or None).
__all__ = [
    "ACCESS_DENIED",
    "CR_SERVER_LOST",
    "ER_COLUMNACCESS_DENIED",
    "ER_DBACCESS_DENIED",
    "ER_KILL_DENIED",
    "ER_NO_SUCH_QUERY",
    "ER_QUERY_TIMEOUT",
    "ER_SPECIFIC_ACCESS_DENIED",
    "ER_STATEMENT_TIMEOUT",
    "ER_TABLEACCESS_DENIED",
    "ER_UNKNOWN_THREAD",
    "HAS_PYMYSQL",
    "PYMYSQL_IMPORT_ERROR",
    "client_side",
    "error_code",
    "pymysql",
]

try:
    import pymysql

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError:
    HAS_PYMYSQL = False
    pymysql = None
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()


# Server error codes the driver reacts to.
ER_DBACCESS_DENIED = 1044
ER_UNKNOWN_THREAD = 1094
ER_KILL_DENIED = 1095
ER_NO_SUCH_QUERY = 1957
ER_STATEMENT_TIMEOUT = 1969
ER_QUERY_TIMEOUT = 3024  # MySQL max_execution_time
CR_SERVER_LOST = 2013
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_SPECIFIC_ACCESS_DENIED = 1227
ACCESS_DENIED = (ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED)


def error_code(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def client_side(code):
    """Whether an error code (error_code) is the client's (2000+, or none): the connection
    failed or timed out, so the server's side of the statement is not known."""
    return code is None or code >= 2000
