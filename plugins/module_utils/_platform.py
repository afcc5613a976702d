# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Managed platforms (docs: README "Managed databases"): which service runs the server,
how that is detected, the service's own accounts, and what the service does not allow.

Private to the collection; pure (no database library, no Ansible import), Python 3.8.
The drivers run the detection statements (``postgresql_detect_query``,
``mysql_detect_query``) and hand their row to ``detected``.

How ``auto`` decides, first match wins (the order of ``MANAGED``):

* ``rds`` -- PostgreSQL: the role ``rdsadmin`` exists or a setting ``rds.*`` is defined;
  MySQL / MariaDB: the procedure ``mysql.rds_kill`` or the account ``rdsadmin`` exists.
* ``cloudsql`` -- the role / account ``cloudsqladmin`` exists (PostgreSQL: or a
  ``cloudsql.*`` setting).
* ``azure`` -- the role / account ``azure_superuser`` (PostgreSQL flexible server:
  ``azuresu``) exists (PostgreSQL: or an ``azure.*`` setting).
* else ``self_managed``.

PostgreSQL's catalogs show every role to every login. On MySQL / MariaDB the accounts are
read in ``mysql.user`` where the login may read its User column (the grant the superuser
protection needs anyway) and in the thread list; the procedures in
``information_schema.ROUTINES``, which lists those the login may execute.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

from typing import Any, Callable, Iterable, Protocol, Sequence

AUTO = "auto"
SELF_MANAGED = "self_managed"
RDS = "rds"
CLOUDSQL = "cloudsql"
AZURE = "azure"
MANAGED = (RDS, CLOUDSQL, AZURE)
CHOICES = (AUTO, SELF_MANAGED) + MANAGED

LABELS = {
    SELF_MANAGED: "a self-managed server",
    RDS: "Amazon RDS / Aurora",
    CLOUDSQL: "Google Cloud SQL",
    AZURE: "Azure Database",
}

# The service's own accounts, per engine: their sessions are never touched (protected,
# reason "service"), and a drain never changes their rights.
SERVICE_USERS: dict[str, dict[str, tuple[str, ...]]] = {
    "postgresql": {
        RDS: ("rdsadmin", "rdsrepladmin"),
        CLOUDSQL: ("cloudsqladmin", "cloudsqlagent", "cloudsqlreplica", "cloudsqlimportexport"),
        AZURE: ("azure_superuser", "azuresu"),
    },
    "mysql": {
        RDS: ("rdsadmin", "rdsrepladmin"),
        CLOUDSQL: ("cloudsqladmin", "cloudsqlreplica", "cloudsqlimportexport"),
        AZURE: ("azure_superuser",),
    },
}

# Where a server-level value is set on each service (ALTER SYSTEM / SET GLOBAL are refused there).
SERVER_SETTINGS_PLACE = {
    RDS: "the DB parameter group (Aurora: the DB cluster parameter group) of the instance: "
    "aws rds modify-db-parameter-group --parameters ParameterName={variable},ParameterValue={value}",
    CLOUDSQL: "a database flag of the instance: "
    "gcloud sql instances patch INSTANCE --database-flags={variable}={value}",
    AZURE: "a server parameter of the server: az {cli} flexible-server parameter set --name {variable} --value {value}",
}

# The procedures RDS for MySQL / MariaDB gives its master user to end other users' threads.
RDS_KILL = "mysql.rds_kill"
RDS_KILL_QUERY = "mysql.rds_kill_query"
RDS_PROCEDURES = {"terminate": RDS_KILL, "cancel": RDS_KILL_QUERY}

_PG_DETECT_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ANY(%(rds)s::text[])) "
    "OR EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name LIKE 'rds.%%'), "
    "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ANY(%(cloudsql)s::text[])) "
    "OR EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name LIKE 'cloudsql.%%'), "
    "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ANY(%(azure)s::text[])) "
    "OR EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name LIKE 'azure.%%')"
)
# The markers of each service on MySQL / MariaDB: an account (``mysql.user`` when the login may
# read it, else the thread list), and RDS's procedure. {users}: the accounts' source; {rds},
# {cloudsql}, {azure}: a placeholder per marker account.
_MYSQL_DETECT_SQL = (
    "SELECT (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql' "
    "AND ROUTINE_NAME = 'rds_kill') + (SELECT COUNT(*) FROM {users} WHERE u IN ({rds})), "
    "(SELECT COUNT(*) FROM {users} WHERE u IN ({cloudsql})), "
    "(SELECT COUNT(*) FROM {users} WHERE u IN ({azure}))"
)
_MYSQL_USERS = {
    True: "(SELECT User AS u FROM mysql.user UNION SELECT USER FROM information_schema.PROCESSLIST) AS a",
    False: "(SELECT USER AS u FROM information_schema.PROCESSLIST) AS a",
}
# The markers that are accounts (the detection's first marker on RDS is its procedure).
_MARKERS: dict[str, dict[str, tuple[str, ...]]] = {
    "postgresql": {RDS: ("rdsadmin",), CLOUDSQL: ("cloudsqladmin",), AZURE: ("azure_superuser", "azuresu")},
    "mysql": {RDS: ("rdsadmin",), CLOUDSQL: ("cloudsqladmin",), AZURE: ("azure_superuser",)},
}


def postgresql_detect_query() -> tuple[str, dict[str, list[str]]]:
    """(sql, params): one row of three booleans: rds, cloudsql, azure markers found."""
    markers = _MARKERS["postgresql"]
    return _PG_DETECT_SQL, dict((name, list(markers[name])) for name in MANAGED)


def mysql_detect_query(user_table_readable: object) -> tuple[str, tuple[str, ...]]:
    """(sql, params): one row of three counts: rds, cloudsql, azure markers found.
    `user_table_readable`: the login may read mysql.user's User column."""
    markers = _MARKERS["mysql"]
    holders = dict((name, ", ".join(["%s"] * len(markers[name]))) for name in MANAGED)
    sql = _MYSQL_DETECT_SQL.format(users=_MYSQL_USERS[bool(user_table_readable)], **holders)
    return sql, tuple(user for name in MANAGED for user in markers[name])


def detected(row: Iterable[object] | None) -> str:
    """The platform a detection row (three truthy / falsy markers) says."""
    for name, found in zip(MANAGED, row or ()):
        if found:
            return name
    return SELF_MANAGED


def resolve(option: str | None, detect: Callable[[], str]) -> str:
    """The platform: `option` (None or 'auto': `detect()`, called only then), checked."""
    if option in (None, "", AUTO):
        return detect()
    if option not in CHOICES:
        raise ValueError(f"platform must be one of {', '.join(CHOICES)}, not {option!r}")
    return option


def service_users(engine: str, platform: str) -> tuple[str, ...]:
    """The service's own accounts on `platform` (none on a self-managed server)."""
    return SERVICE_USERS[engine].get(platform, ())


def mark_service_sessions(sessions: list[dict[str, Any]], engine: str, platform: str) -> list[dict[str, Any]]:
    """Set each record's ``service``: whether its user is one of the service's own accounts."""
    users = set(service_users(engine, platform))
    for session in sessions:
        session["service"] = session.get("user") in users
    return sessions


def facts(engine: str, platform: str, option: str | None) -> dict[str, Any]:
    """The ``platform`` part of a session_info's ``server``: name, how it was decided, service accounts."""
    return {
        "name": platform,
        "label": LABELS[platform],
        "detected": option in (None, "", AUTO),
        "service_users": list(service_users(engine, platform)),
    }


class ServerSetting(Protocol):
    """What server_level_refusal reads of a server-level setting (_timeouts.Setting)."""

    seconds: float

    @property
    def path(self) -> str:
        """Where it was given, for messages (timeouts.server.idle_session)."""


def server_level_refusal(
    platform: str, engine: str, settings: Sequence[ServerSetting], variable_of: Callable[[ServerSetting], str]
) -> str | None:
    """The message refusing server-level timeouts on a managed `platform` (None when none is
    asked or the platform allows them). `settings`: the server-level ones; `variable_of(setting)`:
    the engine's variable of one."""
    if platform not in MANAGED or not settings:
        return None
    cli = "postgres" if engine == "postgresql" else "mysql"
    places = []
    for setting in settings:
        variable = variable_of(setting)
        in_ms = engine == "postgresql" or variable == "max_execution_time"
        value = setting.seconds * 1000 if in_ms else setting.seconds
        places.append(
            f"{setting.path} ({variable}): set it in "
            + SERVER_SETTINGS_PLACE[platform].format(variable=variable, value=value, cli=cli)
        )
    statement = "ALTER SYSTEM" if engine == "postgresql" else "SET GLOBAL"
    return (
        f"{LABELS[platform]} does not allow server-level values through {statement}; nothing was changed: "
        + "; ".join(places)
        + "; the roles and databases levels can stay in dbhygiene_timeouts"
    )
