# -*- coding: utf-8 -*-
"""A change window on a fleet server, for the drain role's tests and molecule scenario:
databases and logins of the test's own, whether a login can connect to a database, and
the server's connection rights read from its catalog (to compare before and after).

Everything goes through the fleet's admin login (never the role under test).
"""

import psycopg2
import pymysql
from dbfleet import mariadb, postgres
from psycopg2 import sql

PASSWORD = "Window-pw-1"


class Window(object):
    """Databases and logins made for one test on one server; drop() removes them."""

    def __init__(self, fleet, server_name, databases, users, grants):
        """grants: {user: [databases it may use]} (MariaDB: privileges on them; PostgreSQL:
        every login may connect to every database, PUBLIC's default)."""
        self.fleet = fleet
        self.server = fleet.server(server_name)
        self.engine = self.server["engine"]
        self.databases = list(databases)
        self.users = list(users)
        self.grants = dict(grants)

    # --- admin access -------------------------------------------------------------
    def _admin(self):
        if self.engine == "postgresql":
            conn = postgres.admin_connect(self.server)
        else:
            conn = mariadb.admin_connect(self.server)
        conn.autocommit = True
        return conn

    def _run(self, statements):
        conn = self._admin()
        try:
            cur = conn.cursor()
            for statement, params in statements:
                cur.execute(statement, params)
        finally:
            conn.close()

    def create(self):
        self.drop()
        if self.engine == "postgresql":
            statements = [
                (sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)), (PASSWORD,))
                for user in self.users
            ]
            statements += [(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)), None) for db in self.databases]
        else:
            statements = []
            for user in self.users:
                for host in ("%", "localhost"):
                    statements.append(("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, PASSWORD)))
            statements += [("CREATE DATABASE `%s`" % db, None) for db in self.databases]
            for user, databases in self.grants.items():
                for db in databases:
                    for host in ("%", "localhost"):
                        statements.append(("GRANT ALL ON `%s`.* TO %%s@%%s" % db, (user, host)))
        self._run(statements)
        return self

    def _existing_roles(self):
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(self.users),))
            return sorted(row[0] for row in cur.fetchall())
        finally:
            conn.close()

    def drop(self):
        if self.engine == "postgresql":
            statements = [
                (sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)), None)
                for db in self.databases
            ]
            # A login that drained first owns the drain record's schema (dbhygiene, in the
            # admin's database): hand what it owns to the admin before it goes.
            for user in self._existing_roles():
                statements += [
                    (sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(user)), None),
                    (sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)), None),
                ]
            statements += [
                (sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)), None) for user in self.users
            ]
        else:
            statements = [("DROP DATABASE IF EXISTS `%s`" % db, None) for db in self.databases]
            for user in self.users:
                for host in ("%", "localhost"):
                    statements.append(("DROP USER IF EXISTS %s@%s", (user, host)))
        self._run(statements)

    # --- what the server says -------------------------------------------------------
    def locked_accounts(self):
        """MariaDB: the window's accounts locked now, as 'user'@'host'."""
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT User, Host FROM mysql.global_priv WHERE User IN ({}) "
                "AND JSON_VALUE(Priv, '$.account_locked') IN ('true', '1')".format(", ".join(["%s"] * len(self.users))),
                list(self.users),
            )
            return set("'%s'@'%s'" % (user, host) for user, host in cur.fetchall())
        finally:
            conn.close()

    def can_connect(self, user, database):
        """Whether `user` can log in to `database` now (a new connection over TCP)."""
        try:
            if self.engine == "postgresql":
                conn = psycopg2.connect(
                    host=self.server["host"],
                    port=self.server["port"],
                    user=user,
                    password=PASSWORD,
                    dbname=database,
                    sslmode="disable",
                    connect_timeout=5,
                )
            else:
                conn = pymysql.connect(
                    host=self.server["host"],
                    port=self.server["port"],
                    user=user,
                    password=PASSWORD,
                    database=database,
                    ssl_disabled=True,
                    connect_timeout=5,
                )
        except (psycopg2.Error, pymysql.err.MySQLError):
            return False
        conn.close()
        return True

    def catalog(self):
        """The server's connection rights, as text rows to compare byte for byte: PostgreSQL
        pg_database (datacl, connection limit, datallowconn) and the logins; MariaDB the
        accounts (mysql.global_priv, which holds account_locked) and mysql.db."""
        conn = self._admin()
        try:
            cur = conn.cursor()
            if self.engine == "postgresql":
                cur.execute(
                    "SELECT datname, datacl::text, datconnlimit, datallowconn FROM pg_database ORDER BY datname"
                )
                databases = cur.fetchall()
                cur.execute(
                    "SELECT rolname, rolcanlogin, rolconnlimit, rolvaliduntil::text FROM pg_roles ORDER BY rolname"
                )
                return {"pg_database": databases, "pg_roles": cur.fetchall()}
            cur.execute("SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host")
            accounts = cur.fetchall()
            cur.execute("SELECT * FROM mysql.db ORDER BY Host, Db, User")
            return {"global_priv": accounts, "db": cur.fetchall()}
        finally:
            conn.close()


def admin_password(fleet):
    return fleet.password("fleet_admin")
