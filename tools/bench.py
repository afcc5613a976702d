"""Benchmarks: how fast the drivers list and end sessions, how long a fleet run
takes, and how that compares with pt-kill on MariaDB. Prints figures; asserts
nothing (speed goals live here, never in timed tests).

    .venv/bin/python tools/bench.py [--sessions 50] [--postgres 2] [--mariadb 2] [--keep]

It starts its own fleet (/tmp/dbhygiene-fleet-bench, addresses 127.0.1.120 and
up), so it never disturbs the test or demo fleets, and stops it at the end
unless --keep. pt-kill comes from Debian's percona-toolkit; the comparison is
skipped when it is not installed.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
sys.path.insert(0, COLLECTIONS)

from dbfleet import holder  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

STATE_DIR = "/tmp/dbhygiene-fleet-bench"
BIN = os.path.dirname(sys.executable)


def _fleet(*args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"))
    subprocess.run(
        [sys.executable, "-m", "dbfleet", "--state-dir", STATE_DIR] + list(args),
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _params(fleet, server):
    srv = fleet.server(server)
    params = {
        "login_host": srv["host"],
        "login_port": srv["port"],
        "login_user": "hygiene",
        "login_password": fleet.password("hygiene"),
        "login_unix_socket": None,
        "connect_timeout": 5,
        "ca_cert": None,
    }
    if srv["engine"] == "postgresql":
        params.update(login_db="postgres", ssl_mode="disable", ssl_cert=None, ssl_key=None)
    else:
        params.update(config_file=None, client_cert=None, client_key=None, check_hostname=None)
    return params


def _driver_module(engine):
    from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql, _postgresql

    return _postgresql if engine == "postgresql" else _mysql


def _hold(fleet, server, count, application, user="app"):
    return [holder.open_session(fleet, server, "idle", user=user, application=application) for dummy in range(count)]


def _release(held):
    for h in held:
        try:
            h.conn.close()
        except Exception:
            pass


def _count_alive(server, ids):
    return len(holder.live(server, ids))


def _ms(seconds):
    return "%.1f ms" % (seconds * 1000)


def bench_driver(fleet, server_name, sessions):
    """Connect, list (median of 20) and a guarded terminate of `sessions` ghosts on one server."""
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy

    server = fleet.server(server_name)
    module = _driver_module(server["engine"])
    app = "bench-ghost-%d" % os.getpid()
    held = _hold(fleet, server_name, sessions, app)
    try:
        time.sleep(1.1)
        start = time.perf_counter()
        driver = module.open_driver(_params(fleet, server_name))
        connect = time.perf_counter() - start
        try:
            driver.preflight(signal=True)
            timings = []
            for _attempt in range(20):
                start = time.perf_counter()
                listed = driver.list_sessions()
                timings.append(time.perf_counter() - start)
            policy = parse_policy({"name": "bench", "rules": [{"applications": [app], "idle_longer_than": 1}]})
            start = time.perf_counter()
            check = apply_policy(driver, policy, check_mode=True)
            plan_time = time.perf_counter() - start
            start = time.perf_counter()
            result = apply_policy(driver, policy, check_mode=False, wait_timeout=10)
            end_time = time.perf_counter() - start
        finally:
            driver.close()
        alive = _count_alive(server, [h.id for h in held])
    finally:
        _release(held)
    return {
        "server": server_name,
        "engine": server["engine"],
        "connect": connect,
        "list_median": statistics.median(timings),
        "listed": len(listed),
        "check_mode": plan_time,
        "would_end": len(check["terminated"]),
        "end_and_confirm": end_time,
        "terminated": len(result["terminated"]),
        "still_alive": alive,
    }


def bench_pt_kill(fleet, server_name, sessions):
    """Time until pt-kill has ended `sessions` idle ghosts, and the same for mysql_sessions' driver."""
    pt_kill = shutil.which("pt-kill")
    if not pt_kill:
        return None
    server = fleet.server(server_name)
    figures = {}
    # pt-kill: match by user (it cannot match an application name), poll every 0.1 s.
    held = _hold(fleet, server_name, sessions, "bench-ptkill", user="app2")
    ids = [h.id for h in held]
    try:
        time.sleep(1.1)
        argv = [
            pt_kill,
            "--host",
            server["host"],
            "--port",
            str(server["port"]),
            "--user",
            "hygiene",
            "--password",
            fleet.password("hygiene"),
            "--match-command",
            "Sleep",
            "--match-user",
            "app2",
            "--idle-time",
            "1",
            "--victims",
            "all",
            "--kill",
            "--interval",
            "0.1",
            "--run-time",
            "30",
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while _count_alive(server, ids) and time.perf_counter() - start < 30:
            time.sleep(0.01)
        figures["pt-kill"] = time.perf_counter() - start
        proc.terminate()
        proc.wait(10)
        figures["pt-kill left"] = _count_alive(server, ids)
    finally:
        _release(held)
    # dbhygiene.sessions, same sessions, same match, through the module on the command line.
    held = _hold(fleet, server_name, sessions, "bench-ours", user="app2")
    ids = [h.id for h in held]
    try:
        time.sleep(1.1)
        args = dict((k, v) for k, v in _params(fleet, server_name).items() if v is not None)
        args["policy"] = {
            "name": "bench",
            "rules": [{"users": ["app2"], "states": ["idle"], "idle_longer_than": 1}],
            "protect": {"superusers": True},
        }
        argv = [
            os.path.join(BIN, "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            "dbhygiene.sessions.mysql_sessions",
            "-a",
            json.dumps(args),
        ]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        figures["mysql_sessions (ansible ad hoc)"] = time.perf_counter() - start
        figures["mysql_sessions left"] = _count_alive(server, ids)
    finally:
        _release(held)
    return figures


def bench_fleet_run(fleet, sessions):
    """Wall clock of the enforce playbook over the whole bench fleet: check mode, then real."""
    playbook = os.path.join(ROOT, "playbooks", "enforce.yml")
    if not os.path.exists(playbook):
        return None
    app = "bench-fleet-%d" % os.getpid()
    held = []
    for server in fleet.servers:
        held += _hold(fleet, server["name"], sessions, app)
    workdir = tempfile.mkdtemp(prefix="dbhygiene-bench-")
    try:
        time.sleep(1.1)
        extra = {
            "dbhygiene_policy": {"name": "bench", "rules": [{"applications": [app], "idle_longer_than": 1}]},
            "dbhygiene_report_dir": workdir,
            "dbhygiene_audit_log": os.path.join(workdir, "audit.jsonl"),
        }
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        figures = {}
        for label, flags in (("check mode", ["--check"]), ("enforce", [])):
            argv = [os.path.join(BIN, "ansible-playbook"), "-i", fleet.inventory, playbook, "-e", json.dumps(extra)]
            start = time.perf_counter()
            proc = subprocess.run(argv + flags, env=env, capture_output=True, text=True, check=False)
            figures[label] = (time.perf_counter() - start, proc.returncode)
        alive = sum(_count_alive(s, [h.id for h in held if h.server["name"] == s["name"]]) for s in fleet.servers)
        figures["left"] = alive
        return figures
    finally:
        _release(held)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50, help="ghost sessions per server (default 50)")
    parser.add_argument("--postgres", type=int, default=2)
    parser.add_argument("--mariadb", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the bench fleet running")
    args = parser.parse_args()

    _fleet("up", "--postgres", str(args.postgres), "--mariadb", str(args.mariadb), "--first", "120")
    fleet = fleet_state.load(STATE_DIR)
    try:
        print(
            "dbhygiene.sessions benchmark: %d ghost sessions per server, %d PostgreSQL + %d MariaDB"
            % (args.sessions, args.postgres, args.mariadb)
        )
        print()
        print("Driver, one server (median of 20 listings; check mode and a real guarded terminate):")
        print(
            "  %-10s %-10s %9s %9s %7s %11s %16s %11s %6s"
            % ("server", "engine", "connect", "list", "listed", "check mode", "end+confirm", "terminated", "left")
        )
        for engine in ("postgresql", "mysql"):
            servers = fleet.by_engine(engine)
            if not servers:
                continue
            r = bench_driver(fleet, servers[0]["name"], args.sessions)
            print(
                "  %-10s %-10s %9s %9s %7d %11s %16s %11d %6d"
                % (
                    r["server"],
                    r["engine"],
                    _ms(r["connect"]),
                    _ms(r["list_median"]),
                    r["listed"],
                    _ms(r["check_mode"]),
                    _ms(r["end_and_confirm"]),
                    r["terminated"],
                    r["still_alive"],
                )
            )
        print()
        mysql_servers = fleet.by_engine("mysql")
        if mysql_servers:
            figures = bench_pt_kill(fleet, mysql_servers[0]["name"], args.sessions)
            if figures is None:
                print("pt-kill comparison: skipped (apt-get install percona-toolkit)")
            else:
                print("MariaDB, %d idle sessions of one user, time until all are gone:" % args.sessions)
                print(
                    "  pt-kill (poll every 0.1 s)              %8.2f s  (left: %d)"
                    % (figures["pt-kill"], figures["pt-kill left"])
                )
                print(
                    "  mysql_sessions (whole ansible process)  %8.2f s  (left: %d)"
                    % (figures["mysql_sessions (ansible ad hoc)"], figures["mysql_sessions left"])
                )
        print()
        figures = bench_fleet_run(fleet, args.sessions)
        if figures is None:
            print("fleet run: skipped (no playbooks/enforce.yml)")
        else:
            print("Fleet run, ansible-playbook playbooks/enforce.yml over %d hosts:" % len(fleet.servers))
            for label in ("check mode", "enforce"):
                seconds, rc = figures[label]
                print("  %-12s %8.2f s  (rc %d)" % (label, seconds, rc))
            print("  ghost sessions left after enforce: %d" % figures["left"])
    finally:
        if not args.keep:
            _fleet("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
