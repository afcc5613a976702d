"""Replicas of fleet servers, started on demand: a PostgreSQL hot standby, a MariaDB replica.

    python -m dbfleet replica start pg1 mariadb1    # one replica of each (also: up --replicas)
    python -m dbfleet replica stop                  # every replica (or name them); down stops them too

    standby = replicas.start(fleet, "pg1")[0]       # the tests: a server entry, as fleet.server() gives
    replicas.caught_up(fleet, standby)              # wait until it has replayed what its primary has now
    replicas.stop(fleet)

A replica has its own data and socket directory and its own address, in the same third-octet
scheme as the fleet but apart from it: 127.0.3.N for PostgreSQL standbys, 127.0.4.N for MariaDB
replicas, N the primary's last octet. It is listed in fleet.json's "replicas" (never among its
"servers": the default fleet stays as it is), and the inventory has it in a group of its own,
`replicas` (children `postgresql_replicas`, `mysql_replicas`), outside `databases`.

PostgreSQL: `pg_basebackup -R` from the primary, as the postgres OS user over the primary's socket
(a `local replication` line is added to the primary's pg_hba.conf while it has a standby), then
streaming replication; the standby is read-only (pg_is_in_recovery()).

MariaDB: the fleet runs without a binary log. The primary is restarted with one (and server_id 1)
and its data directory is copied while it is stopped: a consistent copy at the GTID position the
primary had then. The replica (server_id 2, read_only) replicates with GTID from that position
(`MASTER_USE_GTID=slave_pos`) as the fleet's admin login. When the last replica of a primary
stops, the primary goes back to the default: binary log off (its files deleted), no
replication line.
"""

import os
import shutil
import time

from dbfleet import mariadb, pgbin, pki, postgres, state

# The replica of each engine: its role (what *_session_info says) and the third octet of its address.
ROLES = {"postgresql": "standby", "mysql": "replica"}
OCTETS = {"postgresql": 3, "mysql": 4}
GROUPS = {"postgresql": "postgresql_replicas", "mysql": "mysql_replicas"}
HBA_LINE = "local replication all trust\n"
PRIMARY_SERVER_ID = 1
BINLOG = "mariadb-bin"  # the primary's binary log, in its data dir
REPLICA_SERVER_ID = 2
# The paths of a server entry, all under its base directory.
_PATHS = ("base", "datadir", "socket_dir", "socket", "log", "pidfile")


def of(fleet, primary_name):
    """The replicas of `primary_name` (server entries)."""
    return [r for r in replicas(fleet) if r["primary"] == primary_name]


def replicas(fleet):
    return fleet.data.setdefault("replicas", [])


def describe(fleet, primary):
    """The entry of `primary`'s replica: the primary's, with its own name, role, address and paths."""
    role = ROLES[primary["engine"]]
    name = "%s-%s" % (primary["name"], role)
    base = os.path.join(fleet.state_dir, name)
    replica = dict(primary, name=name, role=role, primary=primary["name"])
    replica["host"] = "127.0.%d.%s" % (OCTETS[primary["engine"]], primary["host"].rsplit(".", 1)[1])
    for key in _PATHS:
        if key in primary:
            replica[key] = base + primary[key][len(primary["base"]) :]
    replica.pop("replication_args", None)
    return replica


def _tls(fleet, server):
    """The fleet's pki paths with a server certificate for `server`'s address."""
    paths = pki.ensure(os.path.join(fleet.state_dir, "pki"), [server["host"]], [])
    return dict(fleet.pki, servers=paths["servers"])


# ---------------------------------------------------------------- PostgreSQL
def _allow_replication(primary, allowed):
    """Add (or take away) the primary's `local replication` line; reload when it changed."""
    path = os.path.join(primary["datadir"], "pg_hba.conf")
    with open(path) as f:
        lines = f.readlines()
    wanted = [line for line in lines if line != HBA_LINE] + ([HBA_LINE] if allowed else [])
    if wanted == lines:
        return
    with open(path, "w") as f:  # an existing file: its owner stays the server's OS user
        f.writelines(wanted)
    conn = postgres.admin_connect(primary)
    try:
        conn.cursor().execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def _tool(server, name):
    """A client program of the server's binaries, or Debian's when they have none (the npm
    package ships the server's programs only)."""
    path = os.path.join(postgres.bindir(server), name)
    return path if os.path.exists(path) else os.path.join(pgbin.debian_bindir(), name)


def _start_standby(fleet, primary, standby, timeout=30):
    user = state.service_user(postgres.OS_USER)
    _allow_replication(primary, True)
    os.makedirs(standby["socket_dir"], mode=0o770, exist_ok=True)
    state.chown_tree(standby["base"], user)
    argv = [
        _tool(primary, "pg_basebackup"),
        "-h",
        primary["socket_dir"],
        "-p",
        str(primary["port"]),
        "-U",
        "postgres",
        "-D",
        standby["datadir"],
        "-R",  # standby.signal (and a primary_conninfo, written again below with our name)
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
    ]
    deadline = time.time() + timeout
    while True:
        try:
            state.run_as(user, argv)
            break
        except RuntimeError as exc:
            # The reload of pg_hba.conf is asynchronous: the first try may come before it.
            if "pg_hba.conf" not in str(exc) or time.time() > deadline:
                raise
            shutil.rmtree(standby["datadir"], ignore_errors=True)
            time.sleep(0.2)
    conninfo = "host=%s port=%d user=postgres application_name=%s" % (
        primary["socket_dir"],
        primary["port"],
        standby["name"],
    )
    postgres._configure(standby, _tls(fleet, standby), user, extra={"primary_conninfo": conninfo})
    postgres.start(standby)


def _standby_caught_up(primary, standby, timeout):
    conn = postgres.admin_connect(primary)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_current_wal_lsn()::text")
        (lsn,) = cur.fetchone()
    finally:
        conn.close()
    conn = postgres.admin_connect(standby)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        deadline = time.time() + timeout
        while True:
            cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
            if cur.fetchone()[0]:
                return
            if time.time() > deadline:
                raise RuntimeError(
                    "%s has not replayed %s of %s in %ds" % (standby["name"], lsn, primary["name"], timeout)
                )
            time.sleep(0.05)
    finally:
        conn.close()


# ---------------------------------------------------------------- MariaDB
def _restart(fleet, server, replication_args, forget=None):
    """Restart a MariaDB with other replication options; `forget`: delete its data dir's files
    whose names start so (the binary log of a primary without replicas) while it is stopped."""
    mariadb.stop(server)
    for name in os.listdir(server["datadir"]) if forget else ():
        if name.startswith(forget):
            os.unlink(os.path.join(server["datadir"], name))
    server["replication_args"] = replication_args
    if not replication_args:
        del server["replication_args"]
    mariadb.start(server, fleet.pki)


def _replica_status(replica):
    conn = mariadb.admin_connect(replica, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else {}
    finally:
        conn.close()


def _start_mariadb_replica(fleet, primary, replica, timeout=30):
    if primary.get("replication_args"):  # logging already: its position now is the copy's
        (position,) = mariadb.admin_query(primary, "SELECT @@gtid_binlog_pos")[0]
    else:
        position = ""
    binlog = ["--log-bin=" + BINLOG, "--server-id=%d" % PRIMARY_SERVER_ID]
    mariadb.stop(primary)
    try:
        mariadb.prepare(fleet.state_dir, replica, _tls(fleet, replica), source=primary["datadir"])
    finally:
        _restart(fleet, primary, binlog)
    replica["replication_args"] = ["--server-id=%d" % REPLICA_SERVER_ID, "--read-only=ON", "--relay-log=relay-bin"]
    mariadb.start(replica, fleet.pki)
    conn = mariadb.admin_connect(replica, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SET GLOBAL gtid_slave_pos = %s", (position,))
        cur.execute(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, MASTER_PASSWORD = %s, "
            "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
            (primary["host"], primary["port"], state.ADMIN_USER, fleet.passwords[state.ADMIN_USER]),
        )
        cur.execute("START SLAVE")
    finally:
        conn.close()
    deadline = time.time() + timeout
    while True:
        status = _replica_status(replica)
        if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
            return
        if time.time() > deadline or status.get("Last_IO_Error") or status.get("Last_SQL_Error"):
            raise RuntimeError(
                "%s does not replicate from %s: IO %s (%s), SQL %s (%s)"
                % (
                    replica["name"],
                    primary["name"],
                    status.get("Slave_IO_Running"),
                    status.get("Last_IO_Error"),
                    status.get("Slave_SQL_Running"),
                    status.get("Last_SQL_Error"),
                )
            )
        time.sleep(0.1)


def _replica_caught_up(primary, replica, timeout):
    (position,) = mariadb.admin_query(primary, "SELECT @@gtid_binlog_pos")[0]
    (waited,) = mariadb.admin_query(replica, "SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))[0]
    if waited != 0:
        status = _replica_status(replica)
        raise RuntimeError(
            "%s has not applied %s of %s in %ds (%s)"
            % (replica["name"], position, primary["name"], timeout, status.get("Last_SQL_Error") or "no error")
        )


# ---------------------------------------------------------------- either engine
def start(fleet, *primary_names):
    """A replica of each of `primary_names` (one per primary: an existing one that runs is kept),
    replicating, recorded in fleet.json; the replicas' entries."""
    started, new = [], []
    for name in primary_names:
        primary = fleet.server(name)
        if primary.get("primary"):
            raise SystemExit("dbfleet: %s is a replica itself: start a replica of a fleet server" % name)
        replica = describe(fleet, primary)
        running = [r for r in of(fleet, name) if _module(r).running_pid(r)]
        if running:
            started.append(running[0])
            continue
        _forget(fleet, replica["name"])
        shutil.rmtree(replica["base"], ignore_errors=True)
        os.makedirs(replica["base"], mode=0o755)
        replicas(fleet).append(replica)
        new.append((primary, replica))
        started.append(replica)
    state.save(fleet)  # before they run: `down` stops them whatever happens next

    def bring_up(pair):
        primary, replica = pair
        if primary["engine"] == "postgresql":
            _start_standby(fleet, primary, replica)
        else:
            _start_mariadb_replica(fleet, primary, replica)

    try:
        state.parallel(bring_up, new)  # one at a time would wait on each other's copy and start
    finally:
        state.save(fleet)  # the primaries' replication options, the replicas' own
    return started


def caught_up(fleet, replica, timeout=30):
    """Wait until `replica` has applied everything its primary has now (RuntimeError after `timeout` s)."""
    primary = fleet.server(replica["primary"])
    if replica["engine"] == "postgresql":
        _standby_caught_up(primary, replica, timeout)
    else:
        _replica_caught_up(primary, replica, timeout)


def _module(server):
    return postgres if server["engine"] == "postgresql" else mariadb


def _forget(fleet, name):
    fleet.data["replicas"] = [r for r in replicas(fleet) if r["name"] != name]


def stop(fleet, *names):
    """Stop the replicas named (by their name or their primary's; all without names), remove
    their directories, and put each primary left without a replica back as the fleet has it."""
    chosen = [r for r in replicas(fleet) if not names or r["name"] in names or r["primary"] in names]
    state.parallel(lambda replica: _module(replica).stop(replica), chosen)
    for replica in chosen:
        shutil.rmtree(replica["base"], ignore_errors=True)
        _forget(fleet, replica["name"])
    state.save(fleet)
    alone = sorted(set(r["primary"] for r in chosen if not of(fleet, r["primary"])))
    try:
        state.parallel(lambda name: _as_in_the_fleet(fleet, fleet.server(name)), alone)
    finally:
        state.save(fleet)
    return [r["name"] for r in chosen]


def _as_in_the_fleet(fleet, primary):
    """A primary without replicas, as the fleet runs it: no replication line, no binary log."""
    if primary["engine"] == "postgresql":
        _allow_replication(primary, False)
    elif primary.get("replication_args"):
        _restart(fleet, primary, [], forget=BINLOG + ".")


def keep(previous, data):
    """`up` rewrites fleet.json: the replicas stay in it, and a primary keeps its binary log."""
    if not previous:
        return
    data["replicas"] = previous.data.get("replicas", [])
    args = dict((s["name"], s["replication_args"]) for s in previous.servers if s.get("replication_args"))
    for server in data["servers"]:
        if server["name"] in args:
            server["replication_args"] = args[server["name"]]


def inventory_groups(fleet, hostvars, engine_vars):
    """The inventory's `replicas` group: {engine group: {"hosts": ..., "vars": ...}} as children."""
    children = {}
    for replica in replicas(fleet):
        group = children.setdefault(GROUPS[replica["engine"]], {"hosts": {}, "vars": engine_vars[replica["engine"]]})
        group["hosts"][replica["name"]] = dict(hostvars(replica), dbfleet_primary=replica["primary"])
    return {"children": children}
