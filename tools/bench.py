"""Benchmarks: how fast the drivers list and end sessions, how long a fleet run
takes, and how that compares with pt-kill on MariaDB. Prints figures; asserts
nothing (speed goals live here, never in timed tests).

    .venv/bin/python tools/bench.py [--sessions 50 [500 ...]] [--postgres 2] [--mariadb 2] [--keep | --state-dir DIR]
    .venv/bin/python tools/bench.py fleet [--hosts 1,50,200] [--forks 5,20] [--repeat 3] [--state-dir DIR]

It starts its own fleet (/tmp/dbhygiene-fleet-bench, addresses 127.0.1.120 and
up), so it never disturbs the test or demo fleets, and stops it at the end
unless --keep (`fleet --state-dir DIR` uses a running fleet instead and leaves
it as it is). pt-kill comes from Debian's percona-toolkit; the comparison is
skipped when it is not installed.

The driver table has a row per engine and number of sessions, with the
statements (round trips) of a sweep: counted by tools/bench_statements.py on the
driver's connection (every execute(), from the statements it runs on connecting,
the preflight, the sweep lock, the listing and the guarded end to the last
confirm poll: what one host costs the server in a real run), and those of the
check-mode sweep (apply_policy in check mode, on the open connection). The
pt-kill comparison and the fleet run use the first number of sessions.

`fleet`: the enforce playbook over 1 / 50 / 200 inventory hosts (the fleet's
servers repeated under many inventory names), in both dbhygiene_run_on modes,
against one trivial module task per host (ansible.builtin.ping) and one
action-only task per host (ansible.builtin.debug), at each number of forks. The
runs of one round alternate (the order rotates from round to round); it prints
the median wall time, CPU time (user + system of ansible-playbook and all its
workers), peak RSS (the largest process, from wait4's rusage), the wall time per
host, the medians of the paired ratios (each enforce run over the ping / debug
run of the same round), and the per-task profile of the enforce playbook
(profile_tasks style: the time from each task's start to the next one's).
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
sys.path.insert(0, COLLECTIONS)

from bench_statements import counting  # noqa: E402
from dbfleet import holder, mariadb, postgres  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402

STATE_DIR = "/tmp/dbhygiene-fleet-bench"
BIN = os.path.dirname(sys.executable)
# The benches end hundreds of sessions, every one of the server's: the default limits lifted.
UNLIMITED = {"max_terminations": "unlimited", "max_fraction": "unlimited"}
BENCH_POLICY = {"name": "bench", "limits": UNLIMITED}


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
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _inprocess

    return _inprocess.ENGINES[engine].driver_module  # the engine registry's driver module


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
        with counting() as counter:
            start = time.perf_counter()
            driver = module.open_driver(_params(fleet, server_name))
            connect = time.perf_counter() - start
            try:
                driver.preflight(signal=True)
                setup_statements = counter.mark()  # connecting and the preflight: once per host
                timings = []
                for _attempt in range(20):
                    start = time.perf_counter()
                    listed = driver.list_sessions()
                    timings.append(time.perf_counter() - start)
                policy = parse_policy(dict(BENCH_POLICY, rules=[{"applications": [app], "idle_longer_than": 1}]))
                before = counter.mark()
                start = time.perf_counter()
                check = apply_policy(driver, policy, check_mode=True)
                plan_time = time.perf_counter() - start
                check_statements = counter.mark() - before
                before = counter.mark()
                start = time.perf_counter()
                result = apply_policy(driver, policy, check_mode=False, wait_timeout=10)
                end_time = time.perf_counter() - start
                real_kinds = counter.by_kind(before)
                real_statements = counter.mark() - before
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
        "sweep_statements": setup_statements + real_statements,
        "sweep_kinds": real_kinds,
        "setup_statements": setup_statements,
        "check_statements": check_statements,
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
            "limits": UNLIMITED,
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
            "dbhygiene_policy": dict(BENCH_POLICY, rules=[{"applications": [app], "idle_longer_than": 1}]),
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


FLEET_VARIANTS = ("enforce controller", "enforce host", "ping", "debug")

# A per-task profile in the manner of ansible.posix's profile_tasks (not installed here):
# the seconds from each task's start to the next task's start (or to the end of the play).
_PROFILE_CALLBACK = """
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._tasks = []

    def _mark(self, name):
        now = time.perf_counter()
        if self._tasks and self._tasks[-1][2] is None:
            self._tasks[-1][2] = now
        if name is not None:
            self._tasks.append([name, now, None])

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._mark(task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._mark(None)
        with open(os.environ["BENCH_PROFILE_OUT"], "w") as handle:
            json.dump([(name, end - start) for name, start, end in self._tasks], handle)
"""


def _fleet_inventory(fleet, hosts, path):
    """An inventory of `hosts` names spread over the fleet's servers (same address, many names)."""
    with open(fleet.inventory) as handle:
        inventory = yaml.safe_load(handle)
    groups = inventory["all"]["children"]["databases"]["children"]
    servers = [(group, name, hv) for group, g in sorted(groups.items()) for name, hv in sorted(g["hosts"].items())]
    for group in groups.values():
        group["hosts"] = {}
    for index in range(hosts):
        group, name, hostvars = servers[index % len(servers)]
        groups[group]["hosts"]["h%04d-%s" % (index, name)] = dict(hostvars)
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)


def _trivial_playbook(workdir, module, args):
    path = os.path.join(workdir, module.split(".")[-1] + ".yml")
    play = [
        {
            "name": "one %s task per host" % module,
            "hosts": "databases",
            "gather_facts": False,
            "tasks": [{"name": module, module: args}],
        }
    ]
    with open(path, "w") as handle:
        json.dump(play, handle)
    return path


def _timed(argv, env):
    """(wall seconds, CPU seconds of the process tree, peak RSS in MiB, rc, output tail)."""
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    tail = out.read()[-1500:].decode("utf-8", "replace")
    out.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode, tail


def bench_fleet_scale(fleet, host_counts, forks_list, repeat):
    workdir = tempfile.mkdtemp(prefix="dbhygiene-bench-fleet-")
    callbacks = os.path.join(workdir, "callbacks")
    os.makedirs(callbacks)
    with open(os.path.join(callbacks, "bench_profile.py"), "w") as handle:
        handle.write(_PROFILE_CALLBACK)
    enforce = os.path.join(ROOT, "playbooks", "enforce.yml")
    ping = _trivial_playbook(workdir, "ansible.builtin.ping", {})
    debug = _trivial_playbook(workdir, "ansible.builtin.debug", {"msg": "hello"})
    # A policy that matches nothing on a real fleet: the whole sweep runs, no session is ended.
    extra = {
        "dbhygiene_policy": {"name": "bench", "rules": [{"applications": ["bench-nothing-%d" % os.getpid()]}]},
        "dbhygiene_report_dir": os.path.join(workdir, "reports"),
        "dbhygiene_audit_log": os.path.join(workdir, "audit.jsonl"),
    }
    figures = {}
    try:
        for hosts in host_counts:
            inventory = os.path.join(workdir, "inventory-%d.yml" % hosts)
            _fleet_inventory(fleet, hosts, inventory)
            for forks in forks_list:
                runs = dict((variant, []) for variant in FLEET_VARIANTS)
                profiles = []
                for round_number in range(repeat):
                    order = FLEET_VARIANTS[round_number % 4 :] + FLEET_VARIANTS[: round_number % 4]
                    for variant in order:
                        argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, "-f", str(forks)]
                        profile_out = os.path.join(workdir, "profile.json")
                        env = dict(
                            os.environ,
                            ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
                            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                            ANSIBLE_LOCALHOST_WARNING="false",
                            ANSIBLE_CALLBACK_PLUGINS=callbacks,
                            ANSIBLE_CALLBACKS_ENABLED="bench_profile",
                            BENCH_PROFILE_OUT=profile_out,
                        )
                        if variant.startswith("enforce"):
                            run_on = variant.split()[1]
                            argv += [enforce, "-e", json.dumps(dict(extra, dbhygiene_run_on=run_on))]
                        else:
                            argv.append(ping if variant == "ping" else debug)
                        wall, cpu, rss, rc, tail = _timed(argv, env)
                        if rc != 0:
                            print("  %s, %d hosts, forks %d: rc %d\n%s" % (variant, hosts, forks, rc, tail))
                        runs[variant].append((wall, cpu, rss))
                        if variant == "enforce controller" and os.path.exists(profile_out):
                            with open(profile_out) as handle:
                                profiles.append(json.load(handle))
                figures[(hosts, forks)] = (runs, profiles)
                _print_fleet_figures(hosts, forks, runs, profiles)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def _median_ratio(runs, variant, base, index):
    return statistics.median(a[index] / b[index] for a, b in zip(runs[variant], runs[base]))


def _print_fleet_figures(hosts, forks, runs, profiles):
    print("%d hosts, forks %d (%d rounds):" % (hosts, forks, len(runs["ping"])))
    print("  %-20s %9s %9s %10s %12s" % ("", "wall s", "CPU s", "peak MiB", "wall/host s"))
    for variant in FLEET_VARIANTS:
        wall = statistics.median(r[0] for r in runs[variant])
        cpu = statistics.median(r[1] for r in runs[variant])
        rss = max(r[2] for r in runs[variant])
        print("  %-20s %9.2f %9.2f %10.1f %12.4f" % (variant, wall, cpu, rss, wall / hosts))
    for variant in ("enforce controller", "enforce host"):
        print(
            "  %-20s wall %.2f x ping, %.2f x debug; CPU %.2f x ping, %.2f x debug"
            % (
                variant,
                _median_ratio(runs, variant, "ping", 0),
                _median_ratio(runs, variant, "debug", 0),
                _median_ratio(runs, variant, "ping", 1),
                _median_ratio(runs, variant, "debug", 1),
            )
        )
    if profiles:
        print("  per-task profile of enforce controller (median s):")
        for position, (name, _seconds) in enumerate(profiles[0]):
            seconds = statistics.median(p[position][1] for p in profiles if len(p) > position)
            print("    %8.2f  %s" % (seconds, name))
    print()
    sys.stdout.flush()


@contextlib.contextmanager
def _room_for(server, sessions):
    """max_connections raised on `server` for a run of `sessions` held sessions, when the
    fleet's own is too small, and put back after."""
    need = sessions + 50
    if server["engine"] == "postgresql":
        before = postgres.MAX_CONNECTIONS
        if need > before:
            postgres.set_max_connections(server, need)
        try:
            yield
        finally:
            if need > before:
                postgres.set_max_connections(server, before)
        return
    conn = mariadb.admin_connect(server)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@max_connections")
        before = int(cur.fetchone()[0])
        if need > before:
            cur.execute("SET GLOBAL max_connections = %s", (need,))
        try:
            yield
        finally:
            if need > before:
                cur.execute("SET GLOBAL max_connections = %s", (before,))
    finally:
        conn.close()


def main_fleet(argv):
    parser = argparse.ArgumentParser(
        prog="bench.py fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", default="1,50,200", help="inventory sizes (default 1,50,200)")
    parser.add_argument("--forks", default="5,20", help="forks (default 5,20)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per configuration (default 3)")
    parser.add_argument("--state-dir", help="use this running fleet (left as it is) instead of starting one")
    parser.add_argument("--postgres", type=int, default=2)
    parser.add_argument("--mariadb", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the bench fleet running")
    args = parser.parse_args(argv)
    if args.state_dir:
        fleet = fleet_state.load(args.state_dir)
    else:
        _fleet("up", "--postgres", str(args.postgres), "--mariadb", str(args.mariadb), "--first", "120")
        fleet = fleet_state.load(STATE_DIR)
    try:
        print(
            "dbhygiene.sessions fleet benchmark: %d servers, ansible-core %s, Python %s, %d CPUs"
            % (len(fleet.servers), _ansible_version(), sys.version.split()[0], os.cpu_count() or 0)
        )
        print()
        bench_fleet_scale(
            fleet, [int(n) for n in args.hosts.split(",")], [int(n) for n in args.forks.split(",")], args.repeat
        )
    finally:
        if not args.state_dir and not args.keep:
            _fleet("down")
    return 0


def _ansible_version():
    from ansible.release import __version__

    return __version__


def main():
    if sys.argv[1:2] == ["fleet"]:
        return main_fleet(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sessions", type=int, nargs="+", default=[50], help="ghost sessions per server, one or more (default 50)"
    )
    parser.add_argument("--postgres", type=int, default=2)
    parser.add_argument("--mariadb", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the bench fleet running")
    parser.add_argument("--state-dir", help="use this running fleet (left as it is) instead of starting one")
    args = parser.parse_args()

    if args.state_dir:
        fleet = fleet_state.load(args.state_dir)
        args.keep = True
    else:
        _fleet("up", "--postgres", str(args.postgres), "--mariadb", str(args.mariadb), "--first", "120")
        fleet = fleet_state.load(STATE_DIR)
    try:
        print(
            "dbhygiene.sessions benchmark: %s ghost sessions per server, %d PostgreSQL + %d MariaDB"
            % (
                " / ".join(str(n) for n in args.sessions),
                len(fleet.by_engine("postgresql")),
                len(fleet.by_engine("mysql")),
            )
        )
        print()
        print("Driver, one server (median of 20 listings; check mode and a real guarded terminate):")
        print(
            "  %-10s %-10s %8s %9s %9s %7s %11s %16s %11s %6s %12s %6s"
            % (
                "server",
                "engine",
                "sessions",
                "connect",
                "list",
                "listed",
                "check mode",
                "end+confirm",
                "terminated",
                "left",
                "stmts/sweep",
                "check",
            )
        )
        kinds = []
        for engine in ("postgresql", "mysql"):
            servers = fleet.by_engine(engine)
            if not servers:
                continue
            for sessions in args.sessions:
                with _room_for(fleet.server(servers[0]["name"]), sessions):
                    r = bench_driver(fleet, servers[0]["name"], sessions)
                print(
                    "  %-10s %-10s %8d %9s %9s %7d %11s %16s %11d %6d %12d %6d"
                    % (
                        r["server"],
                        r["engine"],
                        sessions,
                        _ms(r["connect"]),
                        _ms(r["list_median"]),
                        r["listed"],
                        _ms(r["check_mode"]),
                        _ms(r["end_and_confirm"]),
                        r["terminated"],
                        r["still_alive"],
                        r["sweep_statements"],
                        r["check_statements"],
                    )
                )
                kinds.append((r["engine"], sessions, r["setup_statements"], r["sweep_kinds"]))
        print("  stmts/sweep: every statement (round trip) of a real run on one host, connecting included;")
        print("  check: the check-mode apply_policy on an open connection. The real sweeps' statements:")
        for engine, sessions, setup, by_kind in kinds:
            shown = ", ".join("%s %d" % item for item in sorted(by_kind.items()))
            print("    %-10s %6d sessions: connect+preflight %d, then %s" % (engine, sessions, setup, shown))
        print()
        first = args.sessions[0]  # the size of the pt-kill comparison and of the fleet run
        mysql_servers = fleet.by_engine("mysql")
        if mysql_servers:
            figures = bench_pt_kill(fleet, mysql_servers[0]["name"], first)
            if figures is None:
                print("pt-kill comparison: skipped (apt-get install percona-toolkit)")
            else:
                print("MariaDB, %d idle sessions of one user, time until all are gone:" % first)
                print(
                    "  pt-kill (poll every 0.1 s)              %8.2f s  (left: %d)"
                    % (figures["pt-kill"], figures["pt-kill left"])
                )
                print(
                    "  mysql_sessions (whole ansible process)  %8.2f s  (left: %d)"
                    % (figures["mysql_sessions (ansible ad hoc)"], figures["mysql_sessions left"])
                )
        print()
        figures = bench_fleet_run(fleet, first)
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
