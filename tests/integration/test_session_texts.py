# -*- coding: utf-8 -*-
"""Session texts on real servers, both engines, through ansible-playbook: a password a victim
just set is in no output (default verbosity, -v, -vvv, check mode and diff, a limit's
failure), no result, trail line or report file, with the roles (run_on controller and host)
and the modules; a hostile application name is text in the Markdown report; inf in a number
option fails naming it, before any connection.

The victims log in as a throw-away login of the test and set its password:
PostgreSQL, ALTER ROLE ... PASSWORD, then idle (pg_stat_activity keeps the statement);
MariaDB, SET PASSWORD / ALTER USER waiting behind the global read lock the test holds
(MariaDB shows no statement of an idle thread)."""

import json
import os
import threading
import uuid

import psycopg2
import pymysql
import pytest
from _roles_fixtures import AUDIT, ENFORCE, new_tag, read_trail, write_inventory
from conftest import run_playbook, wait_until
from dbfleet import holder, mariadb, postgres
from dbfleet.state import APP_DATABASE

HOSTS = ("pg1", "mariadb1")
MASK = "'********'"
# Application names a client chooses: markup in the Markdown report unless escaped.
HOSTILE_NAMES = ("|<script>alert(1)</script>", "`x`[x](javascript:alert(1))", "\n# h\n| x |")
# How each engine's victims set their password ({secret} is the token the test looks for).
STATEMENTS = {
    "postgresql": (
        "ALTER ROLE CURRENT_USER WITH ENCRYPTED PASSWORD 'it''s-{secret}'",
        "ALTER ROLE CURRENT_USER PASSWORD $pw$dollar $$ {secret}$pw$",
        "ALTER ROLE CURRENT_USER PASSWORD E'back\\\\slash\\'-{secret}'",
    ),
    "mysql": (
        "SET PASSWORD = PASSWORD('it\\'s-{secret}')",
        'ALTER USER CURRENT_USER() IDENTIFIED BY "dq\\"-{secret}"',
        "SET PASSWORD FOR {user}@'%' = PASSWORD('{secret}')",
    ),
}


class Login(object):
    """A throw-away login on one server and the victims that set its password."""

    def __init__(self, fleet, host):
        self.server = fleet.server(host)
        self.engine = self.server["engine"]
        self.name = "rdx_" + uuid.uuid4().hex[:10]
        self.password = "pw-" + uuid.uuid4().hex
        self.secrets, self.victims, self.threads, self.ids = [], [], [], []
        self.locker = None
        self._admin(
            ["CREATE ROLE %s LOGIN PASSWORD %%s" % self.name]
            if self.engine == "postgresql"
            else [
                "CREATE USER %s@'%%%%' IDENTIFIED BY %%s" % self.name,
                "GRANT CREATE USER ON *.* TO %s@'%%'" % self.name,
            ],
            (self.password,),
        )

    def _admin(self, statements, params=None):
        if self.engine == "postgresql":
            conn = postgres.admin_connect(self.server)
            conn.autocommit = True
        else:
            conn = mariadb.admin_connect(self.server, autocommit=True)
        try:
            for number, statement in enumerate(statements):
                conn.cursor().execute(statement, params if number == 0 else None)
        finally:
            conn.close()

    def _connect(self, application):
        if self.engine == "postgresql":
            conn = psycopg2.connect(
                host=self.server["host"],
                port=self.server["port"],
                user=self.name,
                password=self.password,
                dbname=APP_DATABASE,
                application_name=application,
                sslmode="disable",
            )
            conn.autocommit = True
            self.ids.append(conn.get_backend_pid())
        else:
            conn = pymysql.connect(
                host=self.server["host"],
                port=self.server["port"],
                user=self.name,
                password=self.password,
                program_name=application,
                ssl_disabled=True,
                autocommit=True,
            )
            self.ids.append(conn.thread_id())
        self.victims.append(conn)
        return conn

    def open_victims(self, applications):
        """A session per application, each then setting the login's password (a new secret each):
        all log in first (the password changes)."""
        conns = [self._connect(application) for application in applications]
        if self.engine == "mysql":
            # Every write of the server waits behind this lock, readers do not (a table lock of
            # mysql.global_priv would hold the driver's reads of mysql.user behind the writers).
            self.locker = mariadb.admin_connect(self.server, autocommit=True)
            self.locker.cursor().execute("FLUSH TABLES WITH READ LOCK")
        for number, conn in enumerate(conns):
            secret = uuid.uuid4().hex[:16]
            self.secrets.append(secret)
            statement = STATEMENTS[self.engine][number % 3].format(secret=secret, user=self.name)
            if self.engine == "postgresql":
                conn.cursor().execute(statement)
                continue
            thread = threading.Thread(target=self._run_until_killed, args=(conn, statement), daemon=True)
            thread.start()
            self.threads.append(thread)
            thread_id = conn.thread_id()
            wait_until(lambda t=thread_id: holder.live(self.server, [t]).get(t) == "Query", timeout=10)

    @staticmethod
    def _run_until_killed(conn, statement):
        try:
            conn.cursor().execute(statement)
        except pymysql.MySQLError:
            pass

    def close(self):
        if self.engine == "postgresql":
            self._admin(["SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"], (self.name,))
        else:
            for thread_id in self.ids:
                try:
                    self._admin(["KILL CONNECTION %d" % thread_id])
                except pymysql.MySQLError:  # ended by the test's run already
                    pass
            if self.locker is not None:
                self.locker.cursor().execute("UNLOCK TABLES")
                self.locker.close()
        for thread in self.threads:
            thread.join(10)
        for conn in self.victims:
            try:
                conn.close()
            except Exception:  # a connection the server ended
                pass
        wait_until(lambda: not live_victims(self), timeout=10)
        self._admin(
            [("DROP ROLE IF EXISTS %s" if self.engine == "postgresql" else "DROP USER IF EXISTS %s@'%%'") % self.name]
        )


@pytest.fixture
def logins(fleet):
    made = {host: Login(fleet, host) for host in HOSTS}
    try:
        yield made
    finally:
        for login in made.values():
            login.close()


def _policy(tag, **extra):
    policy = {
        "name": "texts-" + tag,
        "rules": [
            {"name": "pw-idle", "states": ["idle"], "applications": [tag + "-pw*"]},
            {"name": "pw-waiting", "states": ["active"], "applications": [tag + "-pw*"]},
        ],
    }
    policy.update(extra)
    return policy


def _victims(fleet, logins, tag, count, names=("",)):
    """`count` victims per host (application `<tag>-pw<n><name>`) and a bystander each (the limits' share)."""
    held = [holder.open_session(fleet, host, "idle", application=tag + "-bystander") for host in HOSTS]
    for host in HOSTS:
        logins[host].open_victims([f"{tag}-pw{number}{names[number % len(names)]}" for number in range(count)])
    return held


def _texts(run, directory):
    """Every place a password could show: output, the results, the trail, the report files."""
    texts = {"output": run.output, "results": json.dumps(run.results)}
    trail = os.path.join(str(directory), "audit.jsonl")
    if os.path.exists(trail):
        with open(trail) as handle:
            texts["trail"] = handle.read()
    reports = os.path.join(str(directory), "reports")
    for name in os.listdir(reports) if os.path.isdir(reports) else ():
        with open(os.path.join(reports, name)) as handle:
            texts[name] = handle.read()
    return texts


def _assert_no_secret(run, directory, logins):
    secrets = [secret for login in logins.values() for secret in login.secrets]
    assert secrets
    leaks = [(place, secret) for place, text in _texts(run, directory).items() for secret in secrets if secret in text]
    assert not leaks, leaks


def _masked_queries(records, host):
    return [r["query"] for r in records if r.get("host") == host and MASK in (r.get("query") or "")]


def _inventory(fleet, directory, tag, **extra):
    group_vars = {
        "dbhygiene_policy": _policy(tag),
        "dbhygiene_report_dir": str(directory / "reports"),
        "dbhygiene_audit_log": str(directory / "audit.jsonl"),
    }
    group_vars.update(extra)
    return write_inventory(fleet, directory, group_vars, hosts=HOSTS)


@pytest.mark.parametrize("run_on, verbosity", [("controller", 0), ("host", 1), ("controller", 3)])
def test_enforce_ends_password_setters_and_shows_no_password(fleet, logins, tmp_path, run_on, verbosity):
    tag = new_tag("texts")
    inventory = _inventory(fleet, tmp_path, tag, dbhygiene_run_on=run_on)
    held = _victims(fleet, logins, tag, 3)
    try:
        run = run_playbook(ENFORCE, inventory=inventory, verbosity=verbosity)
        assert run.rc == 0, run.output[-3000:]
        records = read_trail(str(tmp_path / "audit.jsonl"))
        for host in HOSTS:
            # seen and ended, the statement kept readable with its literals masked
            ended = [r for r in records if r["host"] == host and r["outcome"] == "terminated"]
            assert len(ended) == 3, records
            assert len(_masked_queries(records, host)) == 3, [r["query"] for r in ended]
        assert any("PASSWORD" in r["query"] for r in records)
        if verbosity:
            assert MASK in run.output
        _assert_no_secret(run, tmp_path, logins)
    finally:
        for session in held:
            session.close()


def test_check_audit_limit_and_modules_show_no_password_and_reports_escape_names(fleet, logins, tmp_path):
    """One set of victims (with hostile application names) for every run that ends nothing."""
    tag = new_tag("texts")
    held = _victims(fleet, logins, tag, 3, names=HOSTILE_NAMES)
    try:
        runs = []
        # enforce --check --diff, on the host, -vvv
        directory = tmp_path / "check"
        inventory = _inventory(fleet, directory, tag, dbhygiene_run_on="host")
        run = run_playbook(ENFORCE, inventory=inventory, check=True, diff=True, verbosity=3)
        assert run.rc == 0, run.output[-3000:]
        records = read_trail(str(directory / "audit.jsonl"))
        assert {r["outcome"] for r in records} == {"would_terminate"} and len(records) == 6
        for host in HOSTS:
            assert len(_masked_queries(records, host)) == 3
        runs.append((run, directory))
        _assert_markdown_escapes_names(_latest(directory, "enforce"), str(directory))

        # audit, default verbosity (controller) and -v (host)
        for run_on, verbosity in (("controller", 0), ("host", 1)):
            directory = tmp_path / ("audit-" + run_on)
            inventory = _inventory(fleet, directory, tag, dbhygiene_run_on=run_on)
            run = run_playbook(AUDIT, inventory=inventory, verbosity=verbosity)
            assert run.rc == 0, run.output[-3000:]
            with open(str(directory / "reports" / "audit-latest.json")) as handle:
                report = json.load(handle)
            for host in HOSTS:
                assert len([e for e in report["hosts"][host]["would_end"] if MASK in e.get("query", "")]) == 3
            runs.append((run, directory))
            _assert_markdown_escapes_names(_latest(directory, "audit"), str(directory))

        # a limit refuses the plan: the would-end list is printed at default verbosity
        directory = tmp_path / "limit"
        inventory = _inventory(fleet, directory, tag, dbhygiene_policy=_policy(tag, limits={"max_terminations": 1}))
        run = run_playbook(ENFORCE, inventory=inventory)
        assert run.rc != 0 and "max_terminations" in run.output
        assert run.output.count(MASK) >= 6  # both hosts' would_end, statements masked
        runs.append((run, directory))

        # the modules, -vvv, one task each, check mode and diff for *_sessions
        run = _modules_run(fleet, tag, tmp_path)
        runs.append((run, tmp_path / "modules"))
        for run, directory in runs:
            _assert_no_secret(run, directory, logins)
        for host in HOSTS:
            assert len(live_victims(logins[host])) == 3  # nothing was ended by any of these runs
    finally:
        for session in held:
            session.close()


def live_victims(login):
    return holder.live(login.server, login.ids)


def _modules_run(fleet, tag, tmp_path):
    directory = tmp_path / "modules"
    directory.mkdir()
    tasks = []
    for host in HOSTS:
        server = fleet.server(host)
        engine = server["engine"]
        login = {
            "login_host": server["host"],
            "login_port": server["port"],
            "login_user": "hygiene",
            "login_password": fleet.password("hygiene"),
        }
        if engine == "postgresql":
            login.update(login_db="postgres", ssl_mode="disable")
        tasks.append(
            {"name": f"{host} info", f"dbhygiene.sessions.{engine}_session_info": dict(login, policy=_policy(tag))}
        )
        tasks.append(
            {
                "name": f"{host} sessions",
                f"dbhygiene.sessions.{engine}_sessions": dict(login, policy=_policy(tag)),
                "check_mode": True,
                "diff": True,
            }
        )
    playbook = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    path = str(directory / "modules.yml")
    with open(path, "w") as handle:
        json.dump(playbook, handle)
    run = run_playbook(path, verbosity=3)
    assert run.rc == 0, run.output[-3000:]
    for host in HOSTS:
        info = run.result(task=f"{host} info")
        assert len([s for s in info["sessions"] if MASK in (s.get("query") or "")]) == 3, host
        would = run.result(task=f"{host} sessions")["terminated"]
        assert len([s for s in would if MASK in (s.get("query") or "")]) == 3, host
    return run


def _latest(directory, kind):
    """The newest Markdown report of `kind` in the run's report directory."""
    reports = str(directory / "reports")
    names = [name for name in os.listdir(reports) if name.startswith(kind) and name.endswith(".md")]
    return max((os.path.join(reports, name) for name in names), key=os.path.getmtime)


def _assert_markdown_escapes_names(path, directory):
    with open(path) as handle:
        markdown = handle.read()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "<script>" not in markdown
    assert "\\`x\\`\\[x\\](javascript:alert(1))" in markdown
    rows = [line for line in markdown.splitlines() if "-pw" in line]
    assert len(rows) == 6, rows  # one line each, whatever line breaks a name holds
    assert len({line.replace("\\|", "").count("|") for line in rows}) == 1  # no cell split by a name
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    for tag in ("<script", "<a ", "<code", "<h1>h"):
        assert tag not in rendered, (tag, directory)


def test_inf_in_a_number_option_fails_naming_it_before_any_connection(fleet, tmp_path):
    """A sample through ansible-playbook: role variables (the play's check), the modules and
    the action plugins used directly (every number option: tests/unit/.../test_numbers.py)."""
    inventory = _inventory(fleet, tmp_path, new_tag("texts"))
    for name, value in (
        ("dbhygiene_query_timeout", "-inf"),
        ("dbhygiene_login_port", "inf"),
        ("dbhygiene_wait_timeout", "nan"),
    ):
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars={name: value})
        assert run.rc != 0
        assert f"{name}: '{value}' is not a finite number" in run.output, run.output[-2000:]
        assert "no host was contacted" in run.output and "Traceback" not in run.output
        assert "OverflowError" not in run.output and "cannot convert" not in run.output
    server = fleet.server("pg1")
    tasks = [
        ("query_timeout", "inf", "postgresql_session_info", {"login_host": server["host"]}),
        ("login_port", "-inf", "mysql_sessions", {"policy": _policy("x")}),
        ("keep", "nan", "session_report", {"kind": "audit", "result_var": "x", "report_dir": str(tmp_path / "r")}),
        (
            "connect_timeout",
            "-inf",
            "session_enforce",
            {"engine": "postgresql", "run_on": "host", "policy": _policy("x")},
        ),
        ("login_port", "inf", "session_audit", {"engine": "mysql", "login_host": server["host"]}),
    ]
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": f"task {number}",
                    "ignore_errors": True,
                    f"dbhygiene.sessions.{module}": dict(args, **{name: value}),
                }
                for number, (name, value, module, args) in enumerate(tasks)
            ],
        }
    ]
    path = str(tmp_path / "numbers.yml")
    with open(path, "w") as handle:
        json.dump(playbook, handle)
    run = run_playbook(path, verbosity=3)
    for number, (name, value, _module, _args) in enumerate(tasks):
        result = run.result(task=f"task {number}")
        assert result["msg"] == f"{name}: '{value}' is not a finite number", result
    assert "Traceback" not in run.output and "OverflowError" not in run.output
    assert not os.path.exists(str(tmp_path / "r"))
