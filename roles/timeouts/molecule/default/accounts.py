"""The molecule scenario's own logins on every fleet server: a PostgreSQL role and a
MariaDB user named after the run's tag (create / check / drop), through the fleet's
admin connections. Only these get limits, so the scenario never changes what other
tests on the same servers see.

    accounts.py create --tag T
    accounts.py check  --tag T     # the limits converge.yml sets are on the servers
    accounts.py drop   --tag T
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "..", "..", "tools"))

from dbfleet import mariadb, postgres, state  # noqa: E402
from psycopg2 import sql  # noqa: E402

PG_WANTED = ["idle_in_transaction_session_timeout=5min", "statement_timeout=1h"]
MY_WANTED = 3600.0


def _pg(server, statement, params=None):
    conn = postgres.admin_connect(server)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


_my = mariadb.admin_query


def create(fleet, tag):
    for server in fleet.servers:
        if server["engine"] == "postgresql":
            _pg(server, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(tag)))
        else:
            _my(server, "CREATE USER %s@%s ACCOUNT LOCK", (tag, "%"))


def check(fleet, tag):
    problems = []
    for server in fleet.servers:
        if server["engine"] == "postgresql":
            rows = _pg(
                server,
                "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE r.rolname = %s AND s.setdatabase = 0",
                (tag,),
            )
            found = sorted(rows[0][0]) if rows else []
            if found != PG_WANTED:
                problems.append(f"{server['name']}: role {tag} has {found}, wanted {PG_WANTED}")
        else:
            rows = _my(server, "SELECT max_statement_time FROM mysql.user WHERE User = %s", (tag,))
            found = [float(row[0]) for row in rows]
            if found != [MY_WANTED]:
                problems.append(f"{server['name']}: user {tag} has max_statement_time {found}, wanted {MY_WANTED}")
    if problems:
        raise SystemExit("\n".join(problems))
    print(f"limits of {tag} as wanted on {len(fleet.servers)} servers")


def drop(fleet, tag):
    for server in fleet.servers:
        if server["engine"] == "postgresql":
            _pg(server, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(tag)))
        else:
            _my(server, "DROP USER IF EXISTS %s@%s", (tag, "%"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["create", "check", "drop"])
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    fleet = state.load()
    if fleet is None:
        raise SystemExit(f"no fleet at {state.state_dir()}")
    {"create": create, "check": check, "drop": drop}[args.command](fleet, args.tag)


if __name__ == "__main__":
    main()
