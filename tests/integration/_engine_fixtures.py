# -*- coding: utf-8 -*-
"""One interface over both engines, for the tests whose behaviour is the same on each.

The `engine` fixture is parametrized over PostgreSQL and MariaDB (test ids `[postgresql]` and
`[mysql]`, so `-k postgresql` picks the PostgreSQL cases, as tools/test-postgresql-majors.sh does).
What differs between the engines, and only that, is a fact of `Engine`: its modules, the
least-privilege login, the state a cancelled query leaves, the words of its connection errors.
Sessions come from dbfleet.holder, the same on both engines, and close at teardown.
"""

import uuid

import pytest
from conftest import lift_share_limit, run_module
from dbfleet import holder

import _mysql_fixtures  # isort: skip
import _postgresql_fixtures  # isort: skip


class Engine:
    """An engine as the engine-neutral tests see it (class attributes: the engine's facts)."""

    name = None  # the test id, and the module prefix
    server = None  # the fleet server the tests run on
    label = None  # how the modules' connection errors name the engine
    cancelled_state = None  # the state of a session whose query was cancelled
    password_env = None  # the environment variable the password falls back to (None: no fallback)
    wrong_password = None  # the server's words for a wrong password
    module_options = {}  # options every run of the sessions module gets

    def __init__(self, fleet):
        self.fleet = fleet
        self.tag = "t-%s" % uuid.uuid4().hex[:8]
        self.opened = []

    @property
    def sessions_module(self):
        return "dbhygiene.sessions.%s_sessions" % self.name

    @property
    def info_module(self):
        return "dbhygiene.sessions.%s_session_info" % self.name

    @property
    def host(self):
        return self.fleet.server(self.server)["host"]

    @property
    def port(self):
        return self.fleet.server(self.server)["port"]

    open_session = staticmethod(holder.open_session)  # (fleet, server, kind, **kwargs)

    def held(self, kind, **kwargs):
        """A session of `kind` (dbfleet.holder) on the engine's server, closed at teardown."""
        session = self.open_session(self.fleet, self.server, kind, **kwargs)
        self.opened.append(session)
        return session

    def close(self):
        for session in self.opened:
            session.close()

    def login(self, **overrides):
        """Module arguments to connect as the fleet's least-privilege login (the engine's
        fixtures build them)."""
        raise NotImplementedError

    def verified_tls(self, ca_cert):
        """The options that make the modules verify the server's certificate against `ca_cert`."""
        raise NotImplementedError

    def sessions_run(self, policy, check=False, diff=False, verbosity=0, env=None, **overrides):
        """The sessions module with `policy`, as the least-privilege login (`overrides`: options)."""
        args = self.login(**self.module_options)
        args.update(overrides)
        args["policy"] = lift_share_limit(policy)
        return run_module(self.sessions_module, args, check=check, diff=diff, verbosity=verbosity, env=env)

    def info_run(self, check=False, verbosity=0, env=None, **overrides):
        return run_module(self.info_module, self.login(**overrides), check=check, verbosity=verbosity, env=env)


class PostgreSQL(Engine):
    name = "postgresql"
    server = "pg2"
    label = "PostgreSQL"
    cancelled_state = "idle"
    password_env = "PGPASSWORD"
    wrong_password = "password authentication failed"

    def login(self, **overrides):
        args = _postgresql_fixtures.conn_params(self.fleet, self.server, **overrides)
        if "ssl_mode" not in overrides:
            del args["ssl_mode"]  # the module's default (prefer): TLS when the server offers it
        return args

    def verified_tls(self, ca_cert):
        return {"ssl_mode": "verify-full", "ca_cert": ca_cert}


class MySQL(Engine):
    name = "mysql"
    server = "mariadb1"
    label = "MySQL/MariaDB"
    cancelled_state = "Sleep"
    wrong_password = "Access denied"
    module_options = {"wait_timeout": 5}

    # An idle session is older than the driver's idle proof before it is returned.
    open_session = staticmethod(_mysql_fixtures.open_session)

    def login(self, **overrides):
        return _mysql_fixtures.module_conn(self.fleet, self.server, **overrides)

    def verified_tls(self, ca_cert):
        return {"ca_cert": ca_cert, "check_hostname": True}


ENGINES = {engine.name: engine for engine in (PostgreSQL, MySQL)}


@pytest.fixture(params=sorted(ENGINES))
def engine(request, fleet):
    """Each engine in turn (ids `postgresql`, `mysql`), with a unique tag for its sessions."""
    under_test = ENGINES[request.param](fleet)
    yield under_test
    under_test.close()
