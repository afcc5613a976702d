"""Hold named sessions on every server of a fleet, check which are still there, release them.

For the molecule scenarios and `make demo` (the tests use dbfleet.holder directly):

    fleet_sessions.py hold    --tag T --session ghost:idle --session web:idle [--servers pg1,mariadb1]
                              [--session blocker:row_lock_holder@pg1 --session web:row_lock_waiter@pg1]
    fleet_sessions.py check   --tag T --gone ghost --alive web [--idle waiter]
    fleet_sessions.py release --tag T

Each session's application name is `<tag>-<name>`, so a policy scoped to the tag
touches nothing else on the (shared) servers; the row_lock_* kinds of a tag lock the
row named after the tag (one lock chain per tag and server). `hold` starts one background
process that keeps every session open and records it in the fleet's holders/
directory, so `dbfleet down` and `dbfleet release` end it too. `check` asks the
servers themselves (admin login), never Ansible.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbfleet import holder, state  # noqa: E402


def _record_path(fleet, tag):
    return os.path.join(fleet.state_dir, "sessions-%s.json" % tag)


def _load_fleet():
    fleet = state.load()
    if fleet is None:
        raise SystemExit("no fleet at %s; start one with `python -m dbfleet up`" % state.state_dir())
    return fleet


def _specs(values):
    """[(name, kind, servers or None)] from NAME:KIND[@SERVER,SERVER] (a session on those servers only)."""
    specs = []
    for value in values:
        name, _sep, kind = value.partition(":")
        kind, _sep, only = kind.partition("@")
        if kind not in holder.KINDS:
            raise SystemExit("--session %s: kind must be one of %s" % (value, ", ".join(holder.KINDS)))
        specs.append((name, kind, only.split(",") if only else None))
    return specs


def _servers(fleet, wanted):
    names = [s["name"] for s in fleet.servers]
    return [n for n in names if not wanted or n in wanted.split(",")]


def cmd_serve(args):
    """The background process: open, record, keep until SIGTERM or --seconds."""
    fleet = _load_fleet()
    held = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        for server in _servers(fleet, args.servers):
            engine = fleet.server(server)["engine"]
            for name, kind, only in _specs(args.session):
                if (engine == "mysql" and kind == "idle_in_transaction_aborted") or (only and server not in only):
                    continue
                held.append(
                    (
                        name,
                        holder.open_session(
                            fleet,
                            server,
                            kind,
                            application="%s-%s" % (args.tag, name),
                            seconds=args.seconds,
                            lock_key=args.tag,
                        ),
                    )
                )
        record = {
            "pid": os.getpid(),
            "tag": args.tag,
            "sessions": [
                {"server": h.server["name"], "name": n, "kind": h.kind, "application": h.application, "id": h.id}
                for n, h in held
            ],
        }
        tmp = _record_path(fleet, args.tag) + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(record, handle, indent=1)
        os.replace(tmp, _record_path(fleet, args.tag))
        deadline = time.time() + args.seconds
        while not stop and time.time() < deadline:
            time.sleep(0.5)
    finally:
        # End each session on the server first (admin login): closing a connection
        # whose statement still runs in a thread would wait for the statement.
        for _name, session in held:
            try:
                session.close()
            except Exception:
                pass
    return 0


def cmd_hold(args):
    fleet = _load_fleet()
    path = _record_path(fleet, args.tag)
    if os.path.exists(path):
        os.unlink(path)
    argv = [sys.executable, os.path.abspath(__file__), "serve", "--tag", args.tag, "--seconds", str(args.seconds)]
    argv += ["--servers", args.servers] if args.servers else []
    for spec in args.session:
        argv += ["--session", spec]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True, env=dict(os.environ)
    )
    hdir = os.path.join(fleet.state_dir, "holders")
    os.makedirs(hdir, exist_ok=True)
    with open(os.path.join(hdir, "%d.pid" % proc.pid), "w") as handle:
        handle.write("%d\n" % proc.pid)
    deadline = time.time() + 60
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("fleet_sessions hold: the holder process failed (exit %s)" % proc.poll())
        time.sleep(0.1)
    with open(path) as handle:
        record = json.load(handle)
    summary = {}
    for entry in record["sessions"]:
        summary.setdefault(entry["application"], []).append("%s:%s" % (entry["server"], entry["id"]))
    for application, where in sorted(summary.items()):
        print("holding %-28s on %s" % (application, " ".join(where)))
    return 0


def cmd_check(args):
    fleet = _load_fleet()
    with open(_record_path(fleet, args.tag)) as handle:
        record = json.load(handle)
    problems = []
    by_server = {}
    for entry in record["sessions"]:
        by_server.setdefault(entry["server"], []).append(entry)
    for server_name, entries in sorted(by_server.items()):
        live = holder.live(fleet.server(server_name), [e["id"] for e in entries])
        shown = []
        for entry in entries:
            alive = entry["id"] in live
            idle = live.get(entry["id"]) in ("idle", "Sleep")
            status = "alive" if alive else "gone"
            if alive and entry["name"] in args.idle:
                status += ", idle" if idle else ", " + str(live[entry["id"]])
            shown.append("%s %s" % (entry["name"], status))
            if entry["name"] in args.idle and not (alive and idle):
                problems.append(
                    "%s: session %s (%s) is %s, not idle"
                    % (server_name, entry["id"], entry["application"], live.get(entry["id"], "gone"))
                )
            if entry["name"] in args.gone and alive:
                problems.append("%s: session %s (%s) is still there" % (server_name, entry["id"], entry["application"]))
            if entry["name"] in args.alive and not alive:
                problems.append("%s: session %s (%s) was ended" % (server_name, entry["id"], entry["application"]))
        print("%-10s %s" % (server_name, ", ".join(shown)))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


def cmd_release(args):
    fleet = _load_fleet()
    path = _record_path(fleet, args.tag)
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        pid = json.load(handle)["pid"]
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            ours = args.tag.encode() in handle.read()
    except OSError:
        ours = False
    if ours:
        os.kill(pid, signal.SIGTERM)
    for stale in (path, os.path.join(fleet.state_dir, "holders", "%d.pid" % pid)):
        if os.path.exists(stale):
            os.unlink(stale)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("hold", "serve"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--tag", required=True)
        cmd.add_argument("--session", action="append", required=True, help="NAME:KIND[@SERVER,...]")
        cmd.add_argument("--servers", help="comma-separated server names (default: all)")
        cmd.add_argument("--seconds", type=int, default=900)
    check = sub.add_parser("check")
    check.add_argument("--tag", required=True)
    check.add_argument("--gone", action="append", default=[])
    check.add_argument("--alive", action="append", default=[])
    check.add_argument("--idle", action="append", default=[], help="alive and idle (its statement completed)")
    release = sub.add_parser("release")
    release.add_argument("--tag", required=True)
    args = parser.parse_args(argv)
    return {"hold": cmd_hold, "serve": cmd_serve, "check": cmd_check, "release": cmd_release}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
