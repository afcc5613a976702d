# -*- coding: utf-8 -*-
"""Replicas on real servers: a PostgreSQL hot standby and a MariaDB replica of a fleet server,
started once for this module (dbfleet.replicas) and stopped after it, so that the default fleet
stays as it is (the MariaDB primary runs with its binary log only meanwhile).

What a server's role changes: `*_session_info` says it (`server.role`), the audit report shows
it per host, enforce works on a standby / replica as on a primary, and a drain there changes no
right (they come from the primary by replication), ends the sessions there and says
`replica: true`. Draining a cluster is the primary, then its replicas; opening it is the primary:
checked here with the rights read on both servers, byte for byte.
"""

import time
import uuid

import pytest
import yaml
from _change_window_fixtures import PASSWORD, Window
from _roles_fixtures import AUDIT, ENFORCE, read_json
from conftest import run_module, run_playbook, wait_until
from dbfleet import cli, holder, replicas

pytest.register_assert_rewrite("_mysql_fixtures", "_postgresql_fixtures")
import _mysql_fixtures as myfx  # noqa: I001 (after register_assert_rewrite)
import _postgresql_fixtures as pgfx

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.guard import IDLE_PROOF_SECONDS
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _inprocess

ENGINES = ("postgresql", "mysql")
ADMIN = "fleet_admin"
ROLE = {"postgresql": "standby", "mysql": "replica"}
DRAIN = {"postgresql": "dbhygiene.sessions.postgresql_drain", "mysql": "dbhygiene.sessions.mysql_drain"}


@pytest.fixture(scope="module")
def cluster(fleet):
    """{engine: (primary name, replica name)}: one replica of the first server of each engine."""
    started = replicas.start(fleet, *[fleet.by_engine(engine)[0]["name"] for engine in ENGINES])
    cli.write_inventory(fleet)
    try:
        yield dict((r["engine"], (r["primary"], r["name"])) for r in started)
    finally:
        replicas.stop(fleet, *[r["name"] for r in started])
        cli.write_inventory(fleet)


def module_conn(fleet, server, user=ADMIN):
    if fleet.server(server)["engine"] == "postgresql":
        return pgfx.conn_params(fleet, server, user=user)
    return myfx.module_conn(fleet, server, user=user)


def driver(fleet, server, user="hygiene"):
    if fleet.server(server)["engine"] == "postgresql":
        return pgfx.driver(fleet, server, user=user)
    return myfx.driver(fleet, server, user=user)


def hold(fleet, server, application, user, database):
    session = holder.open_session(
        fleet, server, "idle", user=user, password=PASSWORD, database=database, application=application
    )
    if session.engine == "mysql":
        time.sleep(IDLE_PROOF_SECONDS + 0.05)  # planned idle only once InnoDB's cache has caught up
    return session


def inventory(fleet, directory, hosts, group_vars):
    """An inventory of fleet servers and replicas `hosts`, each in its engine's group under
    `databases` (the fleet's own puts replicas in a group apart), with group_vars/databases.yml."""
    with open(fleet.inventory) as handle:
        fleet_inventory = yaml.safe_load(handle)
    groups = fleet_inventory["all"]["children"]["databases"]["children"]
    apart = fleet_inventory["all"]["children"].pop("replicas")["children"]
    for engine in ENGINES:
        groups[engine]["hosts"].update(apart[replicas.GROUPS[engine]]["hosts"])
        groups[engine]["hosts"] = dict((h, v) for h, v in groups[engine]["hosts"].items() if h in hosts)
    (directory / "group_vars").mkdir()
    (directory / "group_vars" / "databases.yml").write_text(yaml.safe_dump(group_vars))
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(fleet_inventory))
    return str(path)


# ---------------------------------------------------------------- roles
@pytest.mark.parametrize("engine", ENGINES)
def test_each_login_sees_the_servers_role(fleet, cluster, engine):
    primary, replica = cluster[engine]
    for server, role in ((primary, "primary"), (replica, ROLE[engine])):
        for login in ("hygiene", ADMIN):
            with driver(fleet, server, user=login) as d:
                facts = d.server_facts()
                assert (facts["role"], d.server_role()) == (role, role), (server, login)
                assert facts.get("in_recovery", facts.get("read_only")) is (role != "primary")
    if engine != "mysql":
        return
    # A stopped replica: the admin reads its source (SHOW ALL SLAVES STATUS), the hygiene login
    # (PROCESS only) sees no replication thread: a read-only primary, as documented.
    with myfx.admin(fleet, replica) as cur:
        cur.execute("STOP SLAVE")
    try:
        with driver(fleet, replica, user=ADMIN) as d:
            assert d.server_role() == "replica"
        with driver(fleet, replica) as d:
            assert d.server_role() == "primary" and d.server_facts()["read_only"] is True
    finally:
        with myfx.admin(fleet, replica) as cur:
            cur.execute("START SLAVE")
        replicas.caught_up(fleet, fleet.server(replica))


def test_audit_shows_each_hosts_role_and_enforce_works_on_a_standby_and_a_replica(fleet, cluster, tmp_path):
    """One ansible-playbook run of both playbooks (audit, then enforce) over the primaries and replicas."""
    hosts = [name for pair in cluster.values() for name in pair]
    tag = "rep-%s" % uuid.uuid4().hex[:8]
    targets = [replica for _primary, replica in cluster.values()]
    held = [holder.open_session(fleet, name, "idle", application=tag + "-ghost") for name in targets]
    kept = [holder.open_session(fleet, name, "idle", application=tag + "-kept") for name in targets]
    time.sleep(IDLE_PROOF_SECONDS + 0.05)
    group_vars = {
        "dbhygiene_policy": {
            "name": "replica-ghosts",
            "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"]}],
            "limits": {"max_fraction": "unlimited"},
        },
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
    }
    playbook = tmp_path / "audit-then-enforce.yml"
    playbook.write_text(yaml.safe_dump([{"import_playbook": AUDIT}, {"import_playbook": ENFORCE}]))
    try:
        run = run_playbook(str(playbook), inventory=inventory(fleet, tmp_path, hosts, group_vars))
        assert run.rc == 0, run.output
        audit = read_json(str(tmp_path / "reports" / "audit-latest.json"))
        roles = dict((host, entry["role"]) for host, entry in audit["hosts"].items())
        assert roles == dict(
            [(primary, "primary") for primary, _r in cluster.values()]
            + [(replica, ROLE[engine]) for engine, (_p, replica) in cluster.items()]
        )
        markdown = (tmp_path / "reports" / "audit-latest.md").read_text()
        assert "| host | engine | role | status |" in markdown
        for host, role in roles.items():
            assert f"| {host} | {audit['hosts'][host]['engine']} | {role} | ok |" in markdown, markdown
        # enforce on the standby and the replica: the ghost held on each, and only it
        assert wait_until(lambda: not any(s.alive() for s in held), timeout=10)
        assert all(s.alive() for s in kept)
        enforce = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        for session in held:
            entry = enforce["hosts"][session.server["name"]]
            assert [item["id"] for item in entry["terminated"]] == [session.id], entry
    finally:
        for session in held + kept:
            session.close()


# ---------------------------------------------------------------- drain a cluster
def binlog_statements(fleet, server, needle):
    """The statements of `server`'s binary log (every file) that contain `needle`."""
    found = []
    with myfx.admin(fleet, server) as cur:
        cur.execute("SHOW BINARY LOGS")
        for name in [row[0] for row in cur.fetchall()]:
            cur.execute("SHOW BINLOG EVENTS IN %s", (name,))
            found += [row[5] for row in cur.fetchall() if needle in row[5]]
    return found


def forget_record(fleet, server, db):
    """Take `db` out of the drain record on `server` (a test that failed half-way; replicated)."""
    if fleet.server(server)["engine"] == "postgresql":
        conn = pgfx.admin_connection(fleet, server)  # the record is in the drains' login_db, postgres
        try:
            cur = conn.cursor()
            cur.execute("SELECT to_regclass('dbhygiene.drain') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("DELETE FROM dbhygiene.drain WHERE database = %s", (db,))
        finally:
            conn.close()
        return
    with myfx.admin(fleet, server) as cur:
        if cur.execute("SHOW DATABASES LIKE 'dbhygiene'"):
            for table in ("drain_accounts", "drain_public", "drain_databases"):
                cur.execute(f"DELETE FROM dbhygiene.{table} WHERE db = %s", (db,))


@pytest.mark.parametrize("engine", ENGINES)
def test_drain_the_primary_then_its_replica_open_the_primary(fleet, cluster, engine):
    primary, replica = cluster[engine]
    tag = uuid.uuid4().hex[:8]
    db, user = f"repdb_{tag}", f"rapp_{tag}"
    window = Window(fleet, primary, [db], [user], {user: [db, "appdb"]}).create()
    on_replica = Window(fleet, replica, [db], [user], {})  # read only: never create / drop there
    replica_server = fleet.server(replica)
    held = []
    try:
        replicas.caught_up(fleet, replica_server)
        before = window.catalog()
        assert on_replica.catalog() == before and on_replica.can_connect(user, db)
        held.append(hold(fleet, replica, f"rep-{tag}-db", user, db))
        if engine == "mysql":  # a session of the account on another database: locked, so ended too
            held.append(hold(fleet, replica, f"rep-{tag}-account", user, "appdb"))
        on_primary = hold(fleet, primary, f"rep-{tag}-primary", user, db)

        drained, _run = run_module(DRAIN[engine], dict(module_conn(fleet, primary), databases=[db], grace=1))
        assert not drained.get("failed"), drained
        assert drained["replica"] is False and drained["role"] == "primary" and drained["changes"]
        assert [e["id"] for e in drained["terminated"]] == [on_primary.id]
        replicas.caught_up(fleet, replica_server)
        # The rights reached the replica by replication; its sessions are its own: still there.
        assert on_replica.catalog() == window.catalog() != before
        assert not on_replica.can_connect(user, db)
        assert all(session.alive() for session in held)
        if engine == "mysql":  # the account lock went through the binary log, as a statement
            locks = binlog_statements(fleet, primary, "ACCOUNT LOCK")
            assert any(f"'{user}'@'%'" in statement for statement in locks), locks

        ended, _run = run_module(DRAIN[engine], dict(module_conn(fleet, replica), databases=[db], grace=1))
        assert not ended.get("failed"), ended
        assert ended["replica"] is True and ended["role"] == ROLE[engine]
        assert ended["changes"] == [] and ended["changed"] is True
        assert sorted(e["id"] for e in ended["terminated"]) == sorted(s.id for s in held)
        # what the primary's record (replicated here) has closed: this window among any other test's
        assert db in ended["closed"] and ended["not_drained_on_primary"] == []
        assert db in [entry["database"] for entry in ended["record"]]
        assert wait_until(lambda: not any(session.alive() for session in held), timeout=10)
        assert on_replica.catalog() == window.catalog()  # the replica's drain changed nothing there

        opened, _run = run_module(DRAIN[engine], dict(module_conn(fleet, primary), databases=[db], state="open"))
        assert not opened.get("failed"), opened
        assert opened["replica"] is False and opened["changes"] and db not in opened["closed"]
        replicas.caught_up(fleet, replica_server)
        # Exactly as before on both: the primary's open reached the replica.
        assert window.catalog() == before and on_replica.catalog() == before
        assert on_replica.can_connect(user, db)
        if engine == "mysql":
            unlocks = binlog_statements(fleet, primary, "ACCOUNT UNLOCK")
            assert any(f"'{user}'@'%'" in statement for statement in unlocks), unlocks
    finally:
        for session in held:
            session.close()
        window.drop()
        forget_record(fleet, primary, db)
        replicas.caught_up(fleet, replica_server)


def test_a_drain_on_a_replica_first_warns_that_the_primary_is_open(fleet, cluster):
    primary, replica = cluster["mysql"]
    tag = uuid.uuid4().hex[:8]
    db, user = f"repdb_{tag}", f"rapp_{tag}"
    window = Window(fleet, primary, [db], [user], {user: [db]}).create()
    replica_server = fleet.server(replica)
    try:
        replicas.caught_up(fleet, replica_server)
        session = hold(fleet, replica, f"rep-{tag}-db", user, db)
        # As the drain role runs it by default (run_on: controller): in this process.
        ended = _inprocess.run("mysql", "drain", dict(module_conn(fleet, replica), databases=[db], grace=1))
        assert not ended.get("failed"), ended
        assert ended["not_drained_on_primary"] == [db] and db not in ended["closed"]
        assert [e["id"] for e in ended["terminated"]] == [session.id]
        assert [w for w in ended["warnings"] if f"{db} not drained on the primary" in w], ended["warnings"]
        assert Window(fleet, replica, [db], [user], {}).can_connect(user, db)  # nothing closed it here
    finally:
        window.drop()
        replicas.caught_up(fleet, replica_server)
