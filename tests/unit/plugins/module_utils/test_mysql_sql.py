# -*- coding: utf-8 -*-
"""The MySQL/MariaDB SQL builders and pure helpers, both flavours, without a server."""

import datetime
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql_flavours as fl
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import GUARD_STILL_WAITING
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError

MARIADB = fl.detect("10.11.19-MariaDB-0+deb12u1", "Debian 12", 1)
MARIADB_104 = fl.detect("10.4.30-MariaDB", "MariaDB Server", 1)
MYSQL_8 = fl.detect("8.0.36", "MySQL Community Server - GPL", 1)
MYSQL_8_OLD = fl.detect("8.0.21", "MySQL Community Server - GPL", 1)
MYSQL_8_NO_PS = fl.detect("8.0.36", "MySQL Community Server - GPL", 0)
ALL_FLAVOURS = [MARIADB, MARIADB_104, MYSQL_8, MYSQL_8_OLD, MYSQL_8_NO_PS]


def _placeholders_match(sql, params):
    return sql.count("%s") == len(params)


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
    flavour = fl.detect(version, comment, 1)
    assert flavour.name == name
    assert flavour.version == parsed


# ------------------------------------------------------------ list query
@pytest.mark.parametrize(
    "flavour", ALL_FLAVOURS, ids=lambda f: "%s-%s-ps%d" % (f.name, f.version, f.performance_schema)
)
def test_list_query_shape(flavour):
    sql, params = flavour.list_query()
    assert _placeholders_match(sql, params)
    assert sql.startswith("SELECT p.ID, p.USER, p.HOST")
    assert "p.ID <> CONNECTION_ID()" in sql
    assert "FROM information_schema.INNODB_TRX) AS t ON t.trx_mysql_thread_id = p.ID" in sql
    # program_name is read apart (attrs_query): joining session_connect_attrs is quadratic
    assert "session_connect_attrs" not in sql
    assert params[0] == 1024 and "program_name" not in params
    for user in fl.SYSTEM_USERS:
        assert user in params
    for command in ("Daemon", "Binlog Dump", "Binlog Dump GTID", "Slave_IO", "Slave_SQL"):
        assert command in params
    assert sql.count(" AS ") >= 3
    # exactly the columns normalize_row reads
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(fl.COLUMNS)


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
    assert fl.server_role(read_only, sources) == role


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
    account = fl.quote_account("hygiene@%")
    assert MARIADB.kill_grant(account) == "GRANT CONNECTION ADMIN ON *.* TO 'hygiene'@'%'"
    assert MARIADB_104.kill_grant(account) == "GRANT SUPER ON *.* TO 'hygiene'@'%'"
    assert MYSQL_8.kill_grant(account) == "GRANT CONNECTION_ADMIN ON *.* TO 'hygiene'@'%'"
    assert MARIADB.superuser_grants(account) == ["GRANT SELECT (User, Host, Super_priv) ON mysql.user TO 'hygiene'@'%'"]
    assert "GRANT SELECT ON mysql.global_grants TO 'hygiene'@'%'" in MYSQL_8.superuser_grants(account)


def test_global_privileges_parsing_never_keeps_the_rest_of_the_line():
    lines = [
        "GRANT PROCESS, CONNECTION ADMIN ON *.* TO `hygiene`@`%` IDENTIFIED BY PASSWORD '*97D6CB2C9084'",
        "GRANT SELECT ON `performance_schema`.`session_connect_attrs` TO `hygiene`@`%`",
        "GRANT SELECT (`Super_priv`, `User`, `Host`) ON `mysql`.`user` TO `hygiene`@`%`",
    ]
    assert fl.global_privileges(lines) == {"PROCESS", "CONNECTION ADMIN"}
    assert fl.global_privileges(["GRANT ALL PRIVILEGES ON *.* TO `fleet_admin`@`%` WITH GRANT OPTION"]) == {"ALL"}
    assert fl.global_privileges(["GRANT USAGE ON *.* TO `nopriv`@`%`"]) == {"USAGE"}
    assert fl.global_privileges(["GRANT `role1` TO `x`@`%`"]) == set()


@pytest.mark.parametrize(
    "current, quoted",
    [
        ("hygiene@%", "'hygiene'@'%'"),
        ("o'brien@10.0.0.%", "'o''brien'@'10.0.0.%'"),
        ("we@ird@localhost", "'we@ird'@'localhost'"),
    ],
)
def test_quote_account(current, quoted):
    assert fl.quote_account(current) == quoted


# ------------------------------------------------------------ rows
@pytest.mark.parametrize(
    "host, addr",
    [
        ("127.0.0.1:51234", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("::1:51234", "::1"),
        ("[fe80::1]:3306", "fe80::1"),
        ("localhost", None),
        ("", None),
        (None, None),
        ("app-7.example.com:4000", "app-7.example.com"),
    ],
)
def test_client_address(host, addr):
    assert fl.client_address(host) == addr


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


@pytest.mark.parametrize(
    "command, trx, event, state",
    [
        ("Sleep", None, None, "idle"),  # never had a transaction
        ("Sleep", None, "COMMITTED", "idle"),
        ("Sleep", None, "ROLLED BACK", "idle"),
        ("Sleep", None, "ACTIVE", "idle_in_transaction"),  # a bare BEGIN: no InnoDB transaction yet
        ("Sleep", NOW, "ACTIVE", "idle_in_transaction"),
        ("Sleep", NOW, "COMMITTED", "idle"),  # INNODB_TRX's cache still shows a transaction that ended
        ("Query", None, None, "active"),
        ("Query", NOW, "ACTIVE", "active"),
        ("Execute", None, None, "active"),
        ("Killed", None, None, "other"),
        ("Field List", None, None, "other"),
    ],
)
def test_state_mapping(command, trx, event, state):
    record = fl.normalize_row(_row(command=command, trx=trx, event=event), unproven=EXACT)
    assert record["state"] == state and record["state_detail"] is None


@pytest.mark.parametrize(
    "row, unproven, why",
    [
        (_row(events_on=0), EXACT, "transaction events are off"),  # switched off when the listing ran
        (_row(events_on=None), EXACT, "transaction events are off"),
        (_row(tid=None), EXACT, "not instrumented"),  # setup_actors / threads.INSTRUMENTED
        (_row(event="COMMITTED"), "performance_schema is off", "performance_schema is off"),
        (_row(), fl.TRX_EVENTS_OFF, "transaction events are off"),
    ],
)
def test_a_sleep_thread_without_proof_counts_as_idle_in_transaction(row, unproven, why):
    record = fl.normalize_row(row, unproven=unproven)
    assert record["state"] == "idle_in_transaction"
    assert why in record["state_detail"] and "unproven" in record["state_detail"]
    assert record["transaction_seconds"] is None  # no InnoDB transaction listed: its age is not known


def test_the_age_of_a_transaction():
    exact = fl.normalize_row(_row(trx=NOW, event="ACTIVE", seconds=9.1234), unproven=EXACT)
    assert exact["transaction_seconds"] == 9.123 and exact["trx_thread_id"] == 42  # from BEGIN (the event)
    assert fl.normalize_row(_row(trx=NOW, event="COMMITTED"), unproven=EXACT)["transaction_seconds"] is None
    # Unproven: INNODB_TRX's lower bound where it lists the thread, as before.
    assert fl.normalize_row(_row(trx=NOW, events_on=0), unproven=EXACT)["transaction_seconds"] == 3.5
    assert fl.normalize_row(_row(command="Query", trx=NOW, events_on=0), unproven=EXACT)["state_detail"] is None


def test_normalize_row():
    record = fl.normalize_row(_row(command="Query", info=b"SELECT 'x' " + b"y" * 2000, trx=NOW), 1714550000, "web")
    assert record["id"] == 7 and record["key"] == "7:app@127.0.0.1:5000/1714550000"
    assert record["application"] == "web"
    assert record["client_addr"] == "127.0.0.1"
    assert record["idle_seconds"] == 2.5 and record["query_seconds"] == 2.5
    assert record["state_since"] == "2024-05-01T07:59:57.500000+00:00"
    assert record["transaction_seconds"] == 3.5
    assert record["transaction_started"] == "2024-05-01T08:00:00+00:00"
    assert len(record["query"]) == 1024
    assert record["connected_at"] is None and record["connected_seconds"] is None
    assert record["superuser"] is False
    assert fl.normalize_row(_row())["key"] == "7:app@127.0.0.1:5000"  # no server start known (MySQL without P_S)
    idle = fl.normalize_row(_row(superuser=None))
    assert idle["query_seconds"] is None and idle["transaction_seconds"] is None
    assert idle["superuser"] is None and idle["application"] is None
    assert fl.normalize_row(_row(superuser=1))["superuser"] is True


# ------------------------------------------------------------ guard
def _rec(**changes):
    record = fl.normalize_row(_row(), 1714550000, unproven=EXACT)
    record.update(changes)
    return record


def _later(record, seconds):
    moment = datetime.datetime.fromisoformat(record["state_since"]) + datetime.timedelta(seconds=seconds)
    return moment.isoformat()


@pytest.mark.parametrize(
    "current, outcome",
    [
        (dict, None),
        (lambda p: dict(p, idle_seconds=p["idle_seconds"] + 3), None),
        (lambda p: dict(p, state_since=_later(p, 0.2)), None),
        (lambda p: None, "gone"),
        (lambda p: dict(p, host="127.0.0.1:6000"), "gone"),
        (lambda p: dict(p, user="app2"), "gone"),
        (lambda p: dict(p, key=p["key"].replace("/1714550000", "/1714559999")), "gone"),  # server restarted
        (lambda p: dict(p, command="Query", state="active"), "state_changed"),
        (
            lambda p: dict(p, state="idle_in_transaction", transaction_started="2024-05-01T08:00:00+00:00"),
            "state_changed",
        ),
        (lambda p: dict(p, query_id=11), "state_changed"),
        (lambda p: dict(p, query_id=None, state_since=_later(p, 2)), "state_changed"),
        (lambda p: dict(p, state_since=None), "state_changed"),
    ],
)
def test_moved_on(current, outcome):
    planned = _rec()
    found = fl.moved_on(planned, current(planned), 0.5)
    assert (found[0] if found else None) == outcome


def test_moved_on_active_ignores_query_id_changes_inside_a_procedure():
    planned = _rec(command="Query", state="active", query_id=100)
    assert fl.moved_on(planned, dict(planned, query_id=140), 0.5) is None
    assert fl.moved_on(planned, dict(planned, state_since=_later(planned, 5)), 0.5)[0] == "state_changed"


# ------------------------------------------------------------ connection options
def _params(**options):
    params = dict(
        login_host=None,
        login_port=None,
        login_user=None,
        login_password=None,
        login_unix_socket=None,
        config_file=None,
        connect_timeout=30,
        ca_cert=None,
        client_cert=None,
        client_key=None,
        check_hostname=None,
    )
    params.update(options)
    return params


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_tls_off_unless_asked(home):
    kwargs = _mysql.connect_kwargs(_params(login_host="db1", login_user="u", login_password="pw"))
    assert kwargs["ssl_disabled"] is True
    assert kwargs["port"] == 3306 and kwargs["host"] == "db1" and kwargs["password"] == b"pw"
    assert kwargs["program_name"] == "dbhygiene.sessions" and kwargs["autocommit"] is True
    assert "ssl_ca" not in kwargs


def test_tls_with_ca(home):
    ca = home / "ca.crt"
    ca.write_text("x")
    kwargs = _mysql.connect_kwargs(_params(ca_cert=str(ca)))
    assert kwargs["ssl_ca"] == str(ca) and kwargs["ssl_verify_cert"] and kwargs["ssl_verify_identity"]
    assert "ssl_disabled" not in kwargs
    kwargs = _mysql.connect_kwargs(_params(ca_cert=str(ca), check_hostname=False))
    assert kwargs["ssl_verify_cert"] and not kwargs["ssl_verify_identity"]


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(login_port=70000), "login_port"),
        (dict(login_port=0), "login_port"),
        (dict(connect_timeout=0), "connect_timeout"),
        (dict(ca_cert="/nonexistent/ca.crt"), "ca_cert"),
        (dict(check_hostname=True), "check_hostname"),
        (dict(config_file="/nonexistent/my.cnf"), "config_file"),
    ],
)
def test_bad_connection_options(home, options, field):
    with pytest.raises(SessionError) as caught:
        _mysql.connect_kwargs(_params(**options))
    assert str(caught.value).startswith(field + ":")
    assert repr(list(options.values())[0]) in str(caught.value)


def test_client_key_needs_client_cert(home):
    key = home / "k.pem"
    key.write_text("x")
    with pytest.raises(SessionError, match="^client_key:"):
        _mysql.connect_kwargs(_params(client_key=str(key)))


def test_option_file_defaults_and_precedence(home):
    (home / ".my.cnf").write_text(
        '[client]\nuser = fileuser\npassword = "p\'w;%s"\nhost = filehost\nport = 3307\n[mysql]\nuser = other\n'
    )
    kwargs = _mysql.connect_kwargs(_params())
    assert (kwargs["user"], kwargs["password"], kwargs["host"], kwargs["port"]) == (
        "fileuser",
        b"p'w;%s",
        "filehost",
        3307,
    )
    kwargs = _mysql.connect_kwargs(_params(login_user="opt", login_port=3308))
    assert (kwargs["user"], kwargs["port"], kwargs["host"]) == ("opt", 3308, "filehost")
    other = home / "other.cnf"
    other.write_text("[client]\nsocket=/run/mysqld.sock\n")
    kwargs = _mysql.connect_kwargs(_params(config_file=str(other)))
    assert kwargs["unix_socket"] == "/run/mysqld.sock" and "user" not in kwargs


def test_no_option_file_is_fine(home):
    assert not os.path.exists(str(home / ".my.cnf"))
    assert "user" not in _mysql.connect_kwargs(_params())


def test_unsupported_conditions():
    assert _mysql.MySQLDriver.unsupported_conditions == frozenset(["connected_longer_than"])
    assert _mysql.MySQLDriver.engine == "mysql"


# ------------------------------------------------------------ the guarded kill (SQL)
def _victim(**changes):
    victim = fl.normalize_row(_row(), 1714550000)
    victim.update(changes)
    return victim


def test_mariadb_guard_block_checks_and_kills_each_victim_in_one_statement():
    victims = [_victim(id=7, query_id=10), _victim(id=8, query_id=11, host="127.0.0.1:5001")]
    sql, params = MARIADB.guard_block(victims, "terminate", loop=False)
    assert _placeholders_match(sql, params)
    assert sql.startswith("BEGIN NOT ATOMIC") and sql.endswith("SELECT r; END")
    assert "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION GET DIAGNOSTICS CONDITION 1 e = MYSQL_ERRNO" in sql
    # per victim: one re-read of that very thread, then its KILL, in this order
    # (user names compared byte for byte: MariaDB's are case-sensitive, its collation is not)
    assert sql.count("FROM information_schema.PROCESSLIST WHERE ID = %s AND BINARY USER = BINARY %s AND HOST = %s") == 2
    assert sql.count("KILL CONNECTION %s;") == 2
    first_read, first_kill = sql.index("PROCESSLIST WHERE ID"), sql.index("KILL CONNECTION")
    second_read = sql.index("PROCESSLIST WHERE ID", first_read + 1)
    assert first_read < first_kill < second_read
    # idle victims: same COMMAND and QUERY_ID (no statement since planning), values as parameters
    assert params[:6] == ("Sleep", 10, 7, "app", "127.0.0.1:5000", 7)
    assert params[6:] == ("Sleep", 11, 8, "app", "127.0.0.1:5001", 8)
    assert "127.0.0.1" not in sql and "app" not in sql.replace("GET DIAGNOSTICS", "")


@pytest.mark.parametrize(
    "planned, unproven",
    [
        ({"state": "idle", "idle_seconds": 0.04}, True),
        ({"state": "idle", "idle_seconds": None}, True),
        ({"state": "idle", "idle_seconds": 0.0}, True),  # MySQL TIME 0: anything below a second
        ({"state": "idle", "idle_seconds": 0.15}, False),
        ({"state": "idle", "idle_seconds": 30.0}, False),
        ({"state": "idle_in_transaction", "idle_seconds": 0.01}, False),
        ({"state": "active", "idle_seconds": 0.01}, False),
    ],
)
def test_an_idle_victim_is_ended_only_when_innodb_could_show_its_transaction(planned, unproven):
    detail = fl.idle_unproven(planned)
    assert (detail is not None) is unproven
    if unproven:
        assert "100 ms" in detail and "not ended" in detail


def test_mariadb_guard_block_cancels_by_query_id():
    active = _victim(command="Query", state="active", query_id=99)
    sql, params = MARIADB.guard_block([active], "cancel")
    assert "KILL QUERY ID q;" in sql and "KILL CONNECTION" not in sql
    assert _placeholders_match(sql, params)
    # an active victim: same statement id, or (a procedure moves QUERY_ID) a start not later than planned
    assert "QUERY_ID = %s OR TIMESTAMPADD(MICROSECOND, -ROUND(TIME_MS * 1000), SYSDATE(6))" in sql
    assert params[:3] == ("Query", 99, "2024-05-01 07:59:57.550000")  # state_since + the 50 ms guard tolerance


def test_mariadb_guard_block_refuses_nonsense():
    with pytest.raises(ValueError):
        MARIADB.guard_block([_victim()], "drop")
    with pytest.raises(ValueError):
        MARIADB.guard_block([], "terminate")
    with pytest.raises(ValueError):
        MARIADB.guard_block([_victim(id="7; KILL 1")], "terminate")
    # no state_since to compare and no statement id: never killed
    sql, params = MARIADB.guard_block([_victim(state="active", query_id=None, state_since=None)], "terminate")
    assert "MAX(FALSE)" in sql


# ------------------------------------------------------------ the loop over idle victims
@pytest.mark.parametrize(
    "changes, mode, looped",
    [
        ({}, "terminate", True),
        ({"state": "idle_in_transaction"}, "terminate", True),
        ({}, "cancel", False),  # a cancel needs the statement id it just re-read
        ({"command": "Query", "state": "active"}, "terminate", False),
        ({"waiting_check": True}, "terminate", False),
        ({"query_id": None}, "terminate", False),
    ],
)
def test_only_idle_victims_to_terminate_go_through_the_loop(changes, mode, looped):
    changes = dict(changes)
    if changes.pop("waiting_check", False):
        changes[GUARD_STILL_WAITING] = True
    assert fl.looped_reread(_victim(**changes), mode) is looped


def test_idle_victims_go_through_one_loop_each_reread_before_its_kill_then_the_others():
    idle = [_victim(id=100 + n, query_id=1000 + n) for n in range(10)]
    active = _victim(id=9, command="Query", state="active", query_id=12)
    victims = [active] + idle
    assert [v["id"] for v in MARIADB.guard_order(victims, "terminate")] == [v["id"] for v in idle] + [9]
    assert [v["id"] for v in MARIADB.guard_order(victims, "terminate", loop=False)] == [9] + [v["id"] for v in idle]
    sql, params = MARIADB.guard_block(victims, "terminate")
    assert _placeholders_match(sql, params)
    # one loop, whatever the number of victims; its rows in the order given
    assert sql.count("FOR v IN (SELECT * FROM (") == 1 and "ORDER BY x.k) DO" in sql
    assert sql.count("UNION ALL VALUES") == 1
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    # per victim: a read of that very thread (user byte for byte), then its KILL only if
    # it is still Sleep with the planned QUERY_ID
    read = loop.index(
        "FROM information_schema.PROCESSLIST WHERE ID = v.id AND BINARY USER = BINARY v.usr AND HOST = v.host;"
    )
    kill = loop.index("ELSEIF c = 'Sleep' AND q = v.qid THEN KILL CONNECTION v.id;")
    assert read < kill
    assert "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|');" in loop
    assert loop.count("information_schema.PROCESSLIST") == 1
    # a cursor that could not open: the victims it did not reach are reported, never lost
    assert "IF m < 10 THEN SET r = CONCAT(r, REPEAT(CONCAT('x:', e, '|'), 10 - m)); END IF;" in sql
    rows = [params[7 * n : 7 * n + 7] for n in range(len(idle))]
    # (their state unproven, idle_in_transaction: no transaction check, tx 0)
    assert rows[0] == (0, 100, "app", "127.0.0.1:5000", 1000, 0, 0)
    assert rows[-1] == (9, 109, "app", "127.0.0.1:5000", 1009, 0, 0)
    assert "performance_schema" not in sql
    # the active victim after the loop, with its own step (same statement, or started by then)
    assert params[7 * len(idle) :][:2] == ("Query", 12)
    assert sql.index("END FOR;") < sql.index("FROM information_schema.PROCESSLIST WHERE ID = %s")
    assert "127.0.0.1" not in sql


def test_a_single_idle_victim_is_a_loop_without_values():
    sql, params = MARIADB.guard_block([_victim(id=7, query_id=10)], "terminate")
    assert "FOR v IN" in sql and "UNION ALL" not in sql
    assert params == (0, 7, "app", "127.0.0.1:5000", 10, 0, 0)


# ------------------------------------------------------------ the loop on statement events
def _bindable(n):
    return _victim(id=100 + n, query_id=1000 + n, key="k%d" % n, host="127.0.0.1:%d" % (5000 + n))


def _thread_list(victims, **moved):
    """PROCESSLIST rows (ID, USER, HOST, COMMAND, QUERY_ID) of `victims` as planned; moved:
    {position: {field: value}}."""
    rows = []
    for position, victim in enumerate(victims):
        row = {"user": victim["user"], "host": victim["host"], "command": "Sleep", "query_id": victim["query_id"]}
        row.update(moved.get("at%d" % position, {}))
        rows.append((victim["id"], row["user"], row["host"], row["command"], row["query_id"]))
    return rows


def test_a_victim_is_bound_to_its_latest_event_only_when_the_thread_list_still_shows_it_as_planned():
    victims = [_bindable(n) for n in range(7)]
    threads = [(v["id"], 9000 + n) for n, v in enumerate(victims) if n != 1]  # 1: not instrumented
    events = [(9000 + n, 50 + n, 0) for n in range(7) if n != 2]  # 2: no statement event
    events.append((9003, 77, 1))  # 3: a statement runs (its latest event has not ended)
    events = [e for e in events if not (e[0] == 9003 and e[2] == 0)]
    thread_list = _thread_list(
        victims,
        at4={"query_id": 2004},  # 4: a command since the listing
        at5={"user": "APP"},  # 5: another user (byte for byte)
    )
    bound = fl.bind_statement_events(victims, threads, events, thread_list)
    assert bound == {0: (9000, 50), 6: (9006, 56)}
    # a thread the second thread list no longer shows is not bound
    assert fl.bind_statement_events(victims[:1], threads, events, []) == {}
    # MariaDB gives USER as bytes to a binary comparison
    as_bytes = [(row[0], row[1].encode(), row[2], row[3], row[4]) for row in thread_list]
    assert fl.bind_statement_events(victims, threads, events, as_bytes) == bound


@pytest.mark.parametrize(
    "row, complete",
    [((3, 0, 1), True), ((2, 0, 1), False), ((3, 1, 1), False), ((3, 0, 0), False), ((None, None, None), False)],
)
def test_statement_events_are_complete_only_with_every_consumer_and_instrument_on(row, complete):
    sql, params = fl.statement_events_query()
    assert _placeholders_match(sql, params)
    assert params == ("global_instrumentation", "thread_instrumentation", "events_statements_current", "statement/%")
    assert fl.statement_events_complete(row) is complete


def test_bound_idle_victims_go_first_through_the_loop_on_statement_events():
    idle = [_bindable(n) for n in range(4)]
    active = _victim(id=9, command="Query", state="active", query_id=12, key="k9")
    bound = {"k1": (9001, 51), "k3": (9003, 53)}
    victims = [active] + idle
    order = [v["id"] for v in MARIADB.guard_order(victims, "terminate", bound=bound)]
    assert order == [101, 103, 100, 102, 9]
    sql, params = MARIADB.guard_block(victims, "terminate", bound=bound)
    assert _placeholders_match(sql, params)
    assert sql.count("FOR v IN (SELECT * FROM (") == 2
    events_loop = sql[sql.index("SET m = 0, e = 0, p = ") : sql.index("END FOR;")]
    # the statement instruments once, before the loop; per victim the consumers, then its thread's events,
    # then its KILL only if the latest event is the bound one and none runs
    instruments = events_loop.index("FROM performance_schema.setup_instruments WHERE NAME LIKE %s AND ENABLED <> 'YES'")
    loop_start = events_loop.index("FOR v IN")
    read = events_loop.index("FROM performance_schema.events_statements_current WHERE THREAD_ID = v.tid;")
    consumers = events_loop.index(
        "FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s) AND ENABLED = 'YES'"
    )
    refused = events_loop.index("ELSEIF IFNULL(ok, 0) <> 3 OR IFNULL(p, 1) <> 0 THEN SET r = CONCAT(r, 'p|');")
    kill = events_loop.index("ELSEIF q = v.eid AND w = 0 THEN KILL CONNECTION v.id;")
    assert instruments < loop_start < consumers < read < refused < kill
    # PROCESSLIST only when the thread has no row (it left, or a statement rewrites its row now):
    # then gone, or moved; never a KILL
    fallback = "ELSEIF n = 0 THEN SELECT COUNT(*) INTO n FROM information_schema.PROCESSLIST WHERE ID = v.id;"
    assert events_loop.count("information_schema") == 1 and read < events_loop.index(fallback) < kill
    assert "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); ELSE SET r = CONCAT(r, 'n::1|'); END IF;" in events_loop
    assert params[0] == "statement/%"
    assert params[1:11] == (0, 101, 9001, 51, 0, 1, 103, 9003, 53, 0)
    assert params[11:14] == ("global_instrumentation", "thread_instrumentation", "events_statements_current")
    # then the PROCESSLIST loop of the unbound idle ones, then the active one's own step
    assert params[14:28] == (0, 100, "app", "127.0.0.1:5000", 1000, 0, 0, 1, 102, "app", "127.0.0.1:5002", 1002, 0, 0)
    assert params[28:30] == ("Query", 12)
    # nothing bound: the block is the PROCESSLIST one
    assert MARIADB.guard_block(victims, "terminate", bound={}) == MARIADB.guard_block(victims, "terminate")
    assert "performance_schema" not in MARIADB.guard_block(victims, "terminate")[0]


# ------------------------------------------------------------ the transaction check of victims planned idle
def _proven_idle(**changes):
    """A victim the listing proved outside a transaction (performance_schema's transaction events)."""
    victim = fl.normalize_row(_row(), 1714550000, unproven=EXACT)
    assert victim["state"] == "idle" and victim["trx_thread_id"] == 42
    victim.update(changes)
    return victim


TRX_CONSUMERS = ("global_instrumentation", "thread_instrumentation", "events_transactions_current")


def _check_order(text, read):
    """Positions of: the thread's read, its transaction read, the consumers' check, the KILL. The
    transaction read comes first, so that nothing lengthens the time from the thread's read to
    its KILL."""
    trx = text.index("FROM performance_schema.events_transactions_current WHERE THREAD_ID = ")
    consumers = text.index("FROM performance_schema.setup_consumers WHERE NAME IN (%s, %s, %s)", trx)
    kill = text.index("IF a = 0 THEN KILL ")
    return text.index(read), trx, consumers, kill


@pytest.mark.parametrize(
    "victim, needed",
    [
        (_proven_idle(), True),
        (_proven_idle(state="idle_in_transaction"), False),  # ended in its transaction either way
        (_proven_idle(command="Query", state="active"), False),
    ],
)
def test_a_victim_planned_idle_needs_the_transaction_check(victim, needed):
    assert fl.needs_transaction_check(victim, "terminate") is needed
    assert fl.needs_transaction_check(victim, "cancel") is False  # nothing to cancel in a Sleep thread


def test_the_loop_proves_a_victim_planned_idle_outside_a_transaction_right_before_its_kill():
    idle = [_proven_idle(id=100 + n, query_id=1000 + n, trx_thread_id=900 + n) for n in range(3)]
    unproven = _victim(id=200, query_id=2000)  # idle_in_transaction: no check
    sql, params = MARIADB.guard_block(idle + [unproven], "terminate")
    assert _placeholders_match(sql, params)
    # the instrument once per block, before the loop
    assert params[0] == "transaction"
    assert sql.index("FROM performance_schema.setup_instruments WHERE NAME = %s") < sql.index("FOR v IN")
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    read, trx, consumers, kill = _check_order(loop, "FROM information_schema.PROCESSLIST WHERE ID = v.id")
    assert trx < consumers < read < kill
    assert "SET a = 0; IF v.tx = 1 THEN" in loop  # only where the row says so
    assert "IF tc <> 3 OR IFNULL(tp, 0) <> 1 OR v.tid IS NULL THEN SET a = -1; END IF;" in loop
    assert "ELSEIF a > 0 THEN SET r = CONCAT(r, 'i|'); ELSE SET r = CONCAT(r, 't|'); END IF;" in loop
    rows = [params[1 + 7 * n : 8 + 7 * n] for n in range(4)]
    assert rows[0] == (0, 100, "app", "127.0.0.1:5000", 1000, 900, 1)
    assert rows[3] == (3, 200, "app", "127.0.0.1:5000", 2000, 0, 0)
    assert params[29:32] == TRX_CONSUMERS


def test_a_victim_planned_idle_without_its_thread_id_is_never_killed_unproven():
    sql, params = MARIADB.guard_block([_proven_idle(trx_thread_id=None)], "terminate")
    assert params[1:8] == (0, 7, "app", "127.0.0.1:5000", 10, None, 1)  # v.tid IS NULL: a = -1, 't'


def test_the_statement_events_loop_proves_it_too():
    victim = _proven_idle(key="k1")
    sql, params = MARIADB.guard_block([victim], "terminate", bound={"k1": (9001, 51)})
    assert _placeholders_match(sql, params)
    loop = sql[sql.index("FOR v IN") : sql.index("END FOR;")]
    read, trx, consumers, kill = _check_order(loop, "FROM performance_schema.events_statements_current")
    assert trx < consumers < read < kill
    assert "WHERE THREAD_ID = v.tid;" in loop[trx:]  # the bound THREAD_ID of the statement events
    assert params[:7] == ("transaction", "statement/%", 0, 7, 9001, 51, 1)
    assert params[-3:] == TRX_CONSUMERS


def test_own_steps_prove_it_too():
    victims = [_proven_idle(id=7, trx_thread_id=77), _proven_idle(id=8, trx_thread_id=None, host="127.0.0.1:5001")]
    sql, params = MARIADB.guard_block(victims, "terminate", loop=False)
    assert _placeholders_match(sql, params)
    read, trx, consumers, kill = _check_order(sql, "FROM information_schema.PROCESSLIST WHERE ID = %s")
    assert trx < consumers < read < kill < sql.index("PROCESSLIST WHERE ID = %s", kill)
    assert params[:1] == ("transaction",)
    assert params[1:12] == (77,) + TRX_CONSUMERS + (77, "Sleep", 10, 7, "app", "127.0.0.1:5000", 7)
    assert params[12:23] == (None,) + TRX_CONSUMERS + (None, "Sleep", 10, 8, "app", "127.0.0.1:5001", 8)
    # cancels need no check
    assert "events_transactions_current" not in MARIADB.guard_block(victims, "cancel")[0]


@pytest.mark.parametrize(
    "text, parsed",
    [("i|", [("i", [])]), ("t|", [("t", [])]), ("k:0|i|", [("k", ["0"]), ("i", [])])],
)
def test_the_transaction_outcomes_parse(text, parsed):
    assert fl.parse_guard_outcomes(text, len(parsed)) == parsed


def test_the_list_query_reads_the_transaction_events_in_its_own_statement():
    sql, params = MARIADB.list_query(transactions=True)
    assert _placeholders_match(sql, params)
    assert "performance_schema.events_transactions_current" in sql and "INSTRUMENTED = 'YES'" in sql
    assert params[1:5] == TRX_CONSUMERS + ("transaction",)  # right after LEFT(p.INFO, %s)
    assert "events_transactions_current" not in MARIADB.list_query()[0]
    assert len(sql.split(" FROM ", maxsplit=1)[0].split(", ")) >= len(fl.COLUMNS)


def test_only_mariadb_guards_server_side():
    assert MARIADB.server_side_guard and MARIADB_104.server_side_guard
    assert not any(f.server_side_guard for f in (MYSQL_8, MYSQL_8_OLD, MYSQL_8_NO_PS))
    assert not hasattr(MYSQL_8, "guard_block")


@pytest.mark.parametrize(
    "text, count, parsed",
    [
        (
            "k:0|g|m:Query:12|k:1094|x:1142|",
            5,
            [("k", ["0"]), ("g", []), ("m", ["Query", "12"]), ("k", ["1094"]), ("x", ["1142"])],
        ),
        ("k:0|", 1, [("k", ["0"])]),
    ],
)
def test_parse_guard_outcomes(text, count, parsed):
    assert fl.parse_guard_outcomes(text, count) == parsed


def test_parse_guard_outcomes_refuses_a_wrong_count():
    with pytest.raises(ValueError):
        fl.parse_guard_outcomes("k:0|", 2)
    with pytest.raises(ValueError):
        fl.parse_guard_outcomes(None, 1)


def test_mariadb_templates_show_the_guard_without_values():
    templates = MARIADB.templates()
    assert any(t.startswith("BEGIN NOT ATOMIC") for t in templates)
    assert any("KILL QUERY ID" in t for t in templates)


# ------------------------------------------------------------ attributes, start, timeouts, lock
def test_attrs_query_is_linear_and_parameterised():
    sql, params = fl.Flavour.attrs_query()
    assert sql.startswith("SELECT PROCESSLIST_ID, ATTR_VALUE FROM performance_schema.session_connect_attrs")
    assert "JOIN" not in sql and params == ("program_name",)
    sql, params = fl.Flavour.attrs_query([3, "4"])
    assert "PROCESSLIST_ID IN (%s, %s)" in sql and params == ("program_name", 3, 4)
    with pytest.raises(ValueError):
        fl.Flavour.attrs_query([])


def test_server_started_queries():
    sql, params = MARIADB.server_started_query()
    assert "UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS" in sql and params == ("UPTIME",)
    sql, params = MYSQL_8.server_started_query()
    assert "performance_schema.global_status" in sql and params == ("Uptime",)
    assert MYSQL_8_NO_PS.server_started_query() is None


def test_session_keys_carry_the_server_start():
    assert fl.session_key(4, "app", "localhost", 1714550000) == "4:app@localhost/1714550000"
    assert fl.key_server_started("4:app@localhost/1714550000") == 1714550000
    assert fl.key_server_started("4:app@localhost") is None
    assert fl.key_server_started("4:a/b@localhost") is None
    assert fl.key_server_started(None) is None


def test_statement_timeouts():
    assert MARIADB.statement_timeout_query(30) == ("SET SESSION max_statement_time = %s", (30,))
    assert MYSQL_8.statement_timeout_query(30) == ("SET SESSION max_execution_time = %s", (30000,))


def test_sweep_lock_queries():
    sql, params = MARIADB.lock_query(5, 30)
    assert sql == "SET STATEMENT max_statement_time = %s FOR SELECT GET_LOCK(%s, %s)"
    assert params == (36, "dbhygiene.sessions.sweep", 5.0)
    sql, params = MYSQL_8.lock_query(2.5, 30)
    assert sql == "SELECT /*+ MAX_EXECUTION_TIME(33000) */ GET_LOCK(%s, %s)"
    assert params == ("dbhygiene.sessions.sweep", 3)
    assert MARIADB.unlock_query() == ("SELECT RELEASE_LOCK(%s)", ("dbhygiene.sessions.sweep",))


# ------------------------------------------------------------ options: timeouts, passwords, hostile input
def test_timeouts_bound_the_handshake_and_every_query(home):
    kwargs = _mysql.connect_kwargs(_params(connect_timeout=3))
    assert kwargs["connect_timeout"] == 3 and kwargs["read_timeout"] == 3 and kwargs["write_timeout"] == 3
    assert _mysql.query_timeout_of(_params()) == 30
    assert _mysql.query_timeout_of(_params(query_timeout=5)) == 5
    assert "query_timeout" in _mysql.connection_argument_spec()


@pytest.mark.parametrize("password", ["pass\u20acword", "p\u00e4ssw\u00f6rd"])
def test_passwords_go_as_utf8(home, password):
    assert _mysql.connect_kwargs(_params(login_password=password))["password"] == password.encode("utf-8")


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(login_host="db\x001"), "login_host"),
        (dict(login_user="u\x00"), "login_user"),
        (dict(login_unix_socket="/s\udcff"), "login_unix_socket"),
        (dict(ca_cert="/x\x00"), "ca_cert"),
        (dict(config_file="/x\x00.cnf"), "config_file"),
        (dict(login_port="x"), "login_port"),
        (dict(login_port=True), "login_port"),
        (dict(login_port=3306.5), "login_port"),
        (dict(connect_timeout=-1), "connect_timeout"),
        (dict(connect_timeout=10**9), "connect_timeout"),
        (dict(query_timeout=0), "query_timeout"),
        (dict(query_timeout="soon"), "query_timeout"),
    ],
)
def test_hostile_options_name_the_field(home, options, field):
    with pytest.raises(SessionError) as caught:
        _mysql.connect_kwargs(_params(**options))
        _mysql.query_timeout_of(_params(**options))
    assert str(caught.value).startswith(field + ":")


@pytest.mark.parametrize("password", ["pw\x00secret", "secret\udcff"])
def test_a_bad_password_is_never_shown(home, password):
    with pytest.raises(SessionError) as caught:
        _mysql.connect_kwargs(_params(login_password=password))
    message = str(caught.value)
    assert message.startswith("login_password:") and "secret" not in message and "not shown" in message


def test_long_values_are_cut_in_messages(home):
    with pytest.raises(SessionError) as caught:
        _mysql.connect_kwargs(_params(ca_cert="/x" * 50000))
    message = str(caught.value)
    assert len(message) < 300 and "100000 characters" in message


def test_codec_errors_never_quote_the_value():
    exc = UnicodeEncodeError("latin-1", "pass\u20acword", 4, 5, "ordinal not in range(256)")
    message = _mysql._describe_failure(exc, {"password": "pass\u20acword".encode("utf-8")})
    assert "\u20ac" not in message and "pass" not in message and "UnicodeEncodeError" in message


def test_an_empty_config_file_reads_no_option_file(home):
    (home / ".my.cnf").write_text("[client]\nuser = fileuser\nport = 3307\n")
    assert _mysql.connect_kwargs(_params())["user"] == "fileuser"
    kwargs = _mysql.connect_kwargs(_params(config_file=""))
    assert "user" not in kwargs and kwargs["port"] == 3306


def test_an_option_file_with_a_nul_names_the_file_not_the_value(home):
    (home / ".my.cnf").write_text("[client]\npassword = se\x00cret\n")
    with pytest.raises(SessionError) as caught:
        _mysql.connect_kwargs(_params())
    assert str(caught.value).startswith("config_file:") and "cret" not in str(caught.value)


@pytest.mark.parametrize("threads, size", [(0, 500), (1, 500), (100, 500), (1000, 100), (5000, 20), (10**7, 1)])
def test_guard_blocks_shrink_with_the_thread_list(threads, size):
    assert fl.guard_batch_size(threads) == size


# ------------------------------------------------------------ lock waits
@pytest.mark.parametrize(
    "flavour", ALL_FLAVOURS, ids=lambda f: "%s-%s-ps%d" % (f.name, f.version, f.performance_schema)
)
def test_the_listing_reads_the_lock_waits_in_the_same_statement(flavour):
    sql, params = flavour.list_query()
    mdl_condition, mdl_params = fl.mdl_conflicts_condition()
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
    assert fl.SWEEP_LOCK in params and fl.SWEEP_LOCK not in sql and fl.MDL_USER_LOCK in params
    # derived tables, each read once: no correlated subquery per thread
    assert "(SELECT" not in sql.split(" FROM ", 1)[0]
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(fl.COLUMNS)


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
        assert len(list(_split_select(select))) == len(fl.COLUMNS)
        assert len(sql) < len(full)


@pytest.mark.parametrize("flavour", [MARIADB, MYSQL_8])
def test_the_guard_reread_reads_the_lock_waits_only_when_asked(flavour):
    sql, params = flavour.list_query(ids=[7], row_locks=False, metadata_locks=False)
    assert _placeholders_match(sql, params)
    assert "metadata_locks" not in sql and "AS rw ON" not in sql and fl.SWEEP_LOCK not in params
    select = sql[len("SELECT ") : sql.index(" FROM ")]
    assert len(list(_split_select(select))) == len(fl.COLUMNS)
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
        assert "metadata_locks" in listing and fl.SWEEP_LOCK not in listing
        assert "metadata_locks" not in flavour.templates(metadata_locks=False)[0]


MDL_OBJECT_TYPES = [t for t in fl.MDL_GRANTED_CONFLICTS if not t.startswith("BACKUP_")]


def test_metadata_lock_compatibility_is_symmetric_outside_the_backup_namespace():
    for requested in MDL_OBJECT_TYPES:
        for held in MDL_OBJECT_TYPES:
            assert (held in fl.MDL_GRANTED_CONFLICTS[requested]) == (requested in fl.MDL_GRANTED_CONFLICTS[held]), (
                requested,
                held,
            )


def test_pending_conflicts_are_granted_conflicts():
    # sql/mdl.cc [INV2]: a queued lock that goes first would also block the request once granted
    for requested, pending in fl.MDL_PENDING_CONFLICTS.items():
        assert set(pending) <= set(fl.MDL_GRANTED_CONFLICTS[requested]), requested
    for conflicts in list(fl.MDL_GRANTED_CONFLICTS.values()) + list(fl.MDL_PENDING_CONFLICTS.values()):
        assert set(conflicts) <= set(fl.MDL_GRANTED_CONFLICTS)


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
    assert fl.mdl_blockers(f"{requested} {status} {held} 31") == ([31] if blocks else [])


def test_the_listing_asks_the_server_for_conflicting_locks_only():
    sql, params = fl.mdl_conflicts_condition()
    assert _placeholders_match(sql, params)
    assert "g.LOCK_STATUS = 'GRANTED'" in sql and "g.LOCK_STATUS = 'PENDING'" in sql
    assert "FIND_IN_SET(g.LOCK_TYPE, ELT(FIELD(w.LOCK_TYPE" in sql
    granted = len(fl.MDL_GRANTED_CONFLICTS)
    names, lists = params[:granted], params[granted : 2 * granted]
    # FIELD() position i of a requested type picks list i: its conflicting types, comma separated
    assert dict(zip(names, lists)) == dict((k, ",".join(v)) for k, v in fl.MDL_GRANTED_CONFLICTS.items())
    pending = params[2 * granted :]
    assert dict(zip(pending[: len(pending) // 2], pending[len(pending) // 2 :])) == dict(
        (k, ",".join(v)) for k, v in fl.MDL_PENDING_CONFLICTS.items()
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
    assert fl.mdl_blockers(alter) == [36, 37, 38]
    assert fl.mdl_blockers(select.encode()) == [39]
    assert fl.mdl_blockers(None) == [] and fl.mdl_blockers("") == [] and fl.mdl_blockers("garbage, x y") == []


def _lock_row(elapsed_ms=2500, row=None, mdl=None, thread_id=7):
    """A list-query row with lock columns: row=(waiting, seconds, blockers), mdl=(pending, user_lock, holders)."""
    base = list(_row(command="Query", elapsed_ms=elapsed_ms, trx=NOW if row else None))
    base[0] = thread_id
    return tuple(base[:13]) + tuple(row or (None, None, None)) + tuple(mdl or (None, None, None)) + tuple(base[19:])


def test_records_of_sessions_not_waiting():
    for row in (_row(), _lock_row(), _lock_row(row=(0, None, None))):
        record = fl.normalize_row(row)
        assert record["blocked_by"] == [] and record["lock_wait_seconds"] is None and record["lock_kind"] is None


def test_records_of_innodb_lock_waits():
    record = fl.normalize_row(_lock_row(row=(1, 1.23456, "9,5,9")))
    assert record["blocked_by"] == [5, 9] and record["lock_kind"] == "row"
    assert record["lock_wait_seconds"] == 1.235
    # never longer than the statement that waits
    assert fl.normalize_row(_lock_row(elapsed_ms=800, row=(1, 3.0, "5")))["lock_wait_seconds"] == 0.8
    # a waiter whose blocker the login cannot tell (MySQL without performance_schema): waiting, on no one
    record = fl.normalize_row(_lock_row(row=(1, 2.0, None)))
    assert record["blocked_by"] == [] and record["lock_wait_seconds"] == 2.0 and record["lock_kind"] == "row"
    # no wait start: the statement's age
    assert fl.normalize_row(_lock_row(row=(1, None, "5")))["lock_wait_seconds"] == 2.5
    # a recovered XA transaction holds locks under thread id 0: kept, as any holder not listed
    assert fl.normalize_row(_lock_row(row=(1, 2.0, b"0,12")))["blocked_by"] == [0, 12]


def test_records_of_metadata_lock_waits():
    record = fl.normalize_row(_lock_row(mdl=("EXCLUSIVE", 0, "EXCLUSIVE GRANTED SHARED_READ 36")))
    assert record["blocked_by"] == [36] and record["lock_kind"] == "metadata"
    assert record["lock_wait_seconds"] == 2.5  # the waiting statement's age
    record = fl.normalize_row(_lock_row(mdl=("SHARED_NO_WRITE", 1, "SHARED_NO_WRITE GRANTED SHARED_NO_WRITE 12")))
    assert record["blocked_by"] == [12] and record["lock_kind"] == "user_lock"
    # waiting on a lock whose holder is not a client thread (or of a type not in the table): on no one
    record = fl.normalize_row(_lock_row(mdl=("BACKUP_NEW", 0, None)))
    assert record["blocked_by"] == [] and record["lock_wait_seconds"] == 2.5 and record["lock_kind"] == "metadata"
    # performance_schema is live, INNODB_TRX a cache up to 100 ms old: the metadata lock wins
    record = fl.normalize_row(_lock_row(row=(1, 2.0, "5"), mdl=("EXCLUSIVE", 0, "EXCLUSIVE GRANTED SHARED_READ 36")))
    assert record["blocked_by"] == [36] and record["lock_kind"] == "metadata"
    # a thread never waits on itself
    assert fl.normalize_row(_lock_row(row=(1, 2.0, "7,5")))["blocked_by"] == [5]


def test_lock_waits_arrive_whole_in_group_concat(home):
    # MySQL's group_concat_max_len is 1 KB by default: an ALTER behind 200 readers would be cut
    init = _mysql.connect_kwargs({"login_host": "db"})["init_command"]
    assert "time_zone = '+00:00'" in init and "group_concat_max_len = 4194304" in init


def _waiter(kind, **changes):
    return _victim(
        command="Query",
        state="active",
        lock_kind=kind,
        lock_wait_seconds=12.0,
        **{fl.GUARD_STILL_WAITING: True},
        **changes,
    )


@pytest.mark.parametrize(
    "kind, check",
    [
        ("row", "FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'"),
        ("metadata", "PROCESSLIST WHERE ID = %s AND (STATE LIKE 'Waiting for %%lock' OR STATE = 'User lock')"),
        ("user_lock", "PROCESSLIST WHERE ID = %s AND (STATE LIKE 'Waiting for %%lock' OR STATE = 'User lock')"),
    ],
)
def test_mariadb_guard_cancels_a_waiter_only_while_it_still_waits(kind, check):
    plain = _victim(id=8, command="Query", state="active", query_id=11)
    sql, params = MARIADB.guard_block([_waiter(kind, id=7, query_id=10), plain], "cancel")
    assert _placeholders_match(sql, params)
    # the waiter: checked first, then re-read, then cancelled only if both hold
    assert sql.count(check) == 1 and sql.index(check) < sql.index("PROCESSLIST WHERE ID = %s AND BINARY USER")
    assert params[0] == 7
    assert "ELSEIF ok = 1 THEN IF w > 0 THEN KILL QUERY ID q;" in sql
    assert "ELSE SET r = CONCAT(r, 'w|'); END IF;" in sql
    # a victim of any other rule needs no wait: w is set, not read
    assert sql.count("SET w = 1;") == 1 and sql.count("INTO w") == 1
    assert fl.parse_guard_outcomes("w|k:0|", 2) == [("w", []), ("k", ["0"])]


def test_mysql_guard_requires_a_waiter_to_still_wait():
    planned = _waiter("row")
    assert fl.moved_on(planned, dict(planned), 0.5) is None
    gone_wait = dict(planned, lock_wait_seconds=None, blocked_by=[], lock_kind=None)
    assert fl.moved_on(planned, gone_wait, 0.5) == ("state_changed", fl.NOT_WAITING_DETAIL)
    # a victim of another rule is not asked
    other = dict(planned)
    del other[fl.GUARD_STILL_WAITING]
    assert fl.moved_on(other, gone_wait, 0.5) is None


# ------------------------------------------------------------ verified blocks
def test_block_verifiable_takes_looped_victims_whose_idle_time_is_known():
    assert fl.block_verifiable(_victim(command="Sleep", state="idle", query_id=3, idle_seconds=600), "terminate")
    assert not fl.block_verifiable(_victim(command="Sleep", state="idle", query_id=3, idle_seconds=None), "terminate")
    assert not fl.block_verifiable(_victim(command="Sleep", state="idle", query_id=3, idle_seconds=600), "cancel")
    assert not fl.block_verifiable(_victim(command="Query", state="active", query_id=3, idle_seconds=600), "terminate")


@pytest.mark.parametrize(
    "idle, threads, size",
    [
        # bound 1e-4, margin 0.8: a victim idle t allows 80 us x t; the read costs 10 us x threads,
        # each KILL 100 us more, at its place in the block
        ([1.0] * 10, 100, 0),  # 80 us allowed, the read alone 1 ms
        ([1000.0] * 2000, 100, 790),  # 80 ms: 1 ms read + 790 KILLs
        ([1000.0] * 2000, 4000, 400),  # 80 ms: 40 ms read + 400 KILLs
        ([10000.0] * 5000, 1, 1000),  # never more than VERIFIED_BLOCK
        ([200.0, 200.0, 2000.0, 2000.0], 100, 4),  # the longer idle later in the block: more room
        ([200.0] * 200 + [20.0], 100, 150),  # 16 ms allow 1 ms + 150 KILLs
        ([], 100, 0),
    ],
)
def test_verified_block_size_keeps_each_predicted_window_within_the_bound(idle, threads, size):
    assert fl.verified_block_size(idle, threads, 1e-4, 10e-6, 100e-6) == size


def test_verified_block_reads_the_thread_list_once_and_kills_in_one_loop():
    victims = [
        _victim(id=7, query_id=10, state="idle", idle_seconds=600, trx_thread_id=70),
        _victim(id=8, query_id=11, state="idle", host="127.0.0.1:5001", idle_seconds=900, trx_thread_id=None),
    ]
    sql, params = fl.verified_block(victims, 1e-4)
    assert _placeholders_match(sql, params)
    assert sql.startswith("BEGIN NOT ATOMIC") and sql.endswith("END")
    # one read of the thread list for the block, leading the join; one KILL, in the loop
    assert sql.count("information_schema.PROCESSLIST") == 1
    assert "FROM information_schema.PROCESSLIST AS p STRAIGHT_JOIN" in sql
    assert "BINARY p.USER = BINARY x.usr AND p.HOST = x.host" in sql
    assert sql.count("KILL CONNECTION v.id;") == 1 and sql.count("KILL") == 1
    # the bound, checked in the server right before the KILL; the instant before the read
    assert "SET t0 = SYSDATE(6); FOR v IN" in sql
    assert "IF v.ms > 0 AND z <= 0.0001 THEN KILL CONNECTION v.id;" in sql
    assert "v.c <> 'Sleep' OR v.q <> v.qid" in sql
    # planned idle: the transaction events read with the block, complete, else no KILL
    assert "performance_schema.events_transactions_current" in sql and "SET tc = ((SELECT COUNT(*)" in sql
    assert params[:14] == (0, 7, "app", "127.0.0.1:5000", 10, 70, 1, 1, 8, "app", "127.0.0.1:5001", 11, None, 1)
    assert params[14:] == fl.TRANSACTION_EVENTS_ON_PARAMS


def test_verified_block_without_a_victim_planned_idle_reads_no_transaction_events():
    sql, params = fl.verified_block([_victim(id=7, query_id=10, idle_seconds=600, state="idle_in_transaction")])
    assert _placeholders_match(sql, params)
    assert "events_transactions_current" not in sql and "z <= 0.0001" in sql
    assert params == (0, 7, "app", "127.0.0.1:5000", 10, 0, 0)


def test_on_rds_a_verified_block_ends_its_victims_with_the_service_procedure():
    """RDS's master user has no KILL right over other users' threads: a block kills with
    mysql.rds_kill, as the guard's own loop does (the flavour's loop_kill)."""
    flavour = fl.MariaDB((10, 11, 9), True)
    assert flavour.loop_kill() == "KILL CONNECTION v.id;"
    flavour.rds_kill = True
    sql, params = fl.verified_block([_victim(id=7, query_id=10, idle_seconds=600)], 1e-4, flavour.loop_kill())
    assert _placeholders_match(sql, params)
    assert "IF v.ms > 0 AND z <= 0.0001 THEN CALL mysql.rds_kill(v.id);" in sql and "KILL" not in sql


@pytest.mark.parametrize("bound", [0, 1, -1e-4, True, "1e-4", float("nan")])
def test_verified_block_refuses_a_bound_that_is_no_ratio(bound):
    with pytest.raises(ValueError, match="bound"):
        fl.verified_block([_victim(id=7, query_id=10, idle_seconds=600)], bound)


def test_verified_block_figures():
    assert fl.verified_block_figures("2500:14000:3") == (0.0025, 0.014, 3)
    assert fl.verified_block_figures(":90:0") == (None, 0.00009, 0)
    assert fl.verified_block_figures(None) == (None, None, 0)
    # the outcomes of a block, in the victims' order
    assert fl.parse_guard_outcomes("b:0:1.2e-05|g|r|m:Query:12|", 4) == [
        ("b", ["0", "1.2e-05"]),
        ("g", []),
        ("r", []),
        ("m", ["Query", "12"]),
    ]


@pytest.mark.parametrize(
    "name, user, host",
    [("app", "app", None), ("app@10.%", "app", "10.%"), ("a@b@localhost", "a@b", "localhost"), ("@x", "@x", None)],
)
def test_a_roles_key_is_a_user_name_or_one_account(name, user, host):
    assert fl.split_roles_key(name) == (user, host)


@pytest.mark.parametrize(
    "current, user, host",
    [
        ("app@10.%", "app", "10.%"),
        ("a@b@localhost", "a@b", "localhost"),
        ("@localhost", "", "localhost"),
        ("app", "app", "%"),
        (None, "", "%"),
    ],
)
def test_current_user_text_is_one_account(current, user, host):
    assert fl.split_account(current) == (user, host)
