"""Event-Driven Ansible benchmark: the rulebook's reaction time against pt-kill's daemon, and the
event source's cost per host per poll.

Prints figures; asserts nothing. Runs on the servers of DBFLEET_STATE_DIR (a test fleet,
`python -m dbfleet up`).

    make fleet-up
    DBFLEET_STATE_DIR=/tmp/dbhygiene-fleet-test .venv/bin/python tools/bench_eda.py \\
        --interval 5 --trials 5 --hosts 1 50 200

- reaction: on one MariaDB, a ghost (user app2, idle) is opened; it becomes a victim once idle
  longer than --idle seconds; the time from then to its end is measured, --trials times, with
  the collection's rulebook (ansible-rulebook, session_watch every --interval seconds, then the
  enforce playbook for the host) and with pt-kill's daemon (Debian's percona-toolkit:
  --match-command Sleep --match-user app2 --idle-time --interval, --victims all --kill) at the
  same interval and idle time. Trials start at random phases of the poll interval.
- source: one poll of every host of an inventory of N hosts (aliases of the fleet's servers,
  round-robin), all at once as the source does, after loading the inventory: wall time and the
  controller's CPU time (this process), per host.
"""

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
SOURCE_DIR = os.path.join(ROOT, "extensions", "eda", "plugins", "event_source")
sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, SOURCE_DIR)

import session_watch  # noqa: E402
from bench_mysql import USER, pt_kill_argv  # noqa: E402
from dbfleet import holder  # noqa: E402
from dbfleet import state as fleet_state  # noqa: E402


def _inventory(fleet, directory, hosts, policy, **group_vars):
    """An inventory directory whose hosts are `hosts` [(alias, server)], with group_vars."""
    with open(fleet.inventory) as handle:
        source = yaml.safe_load(handle)
    groups = source["all"]["children"]["databases"]["children"]
    servers = {name: (group, hv) for group, g in groups.items() for name, hv in g["hosts"].items()}
    for group in groups.values():
        group["hosts"] = {}
    for alias, server in hosts:
        group, host_vars = servers[server]
        groups[group]["hosts"][alias] = dict(host_vars)
    path = os.path.join(directory, "inventory")
    os.makedirs(os.path.join(path, "group_vars"), exist_ok=True)
    with open(os.path.join(path, "hosts.yml"), "w") as handle:
        yaml.safe_dump(source, handle)
    variables = {"dbhygiene_policy": policy}
    variables.update(group_vars)
    with open(os.path.join(path, "group_vars", "databases.yml"), "w") as handle:
        yaml.safe_dump(variables, handle)
    return path


def _ghost_policy(idle):
    return {
        "name": "bench-eda",
        "rules": [{"name": "ghost", "states": ["idle"], "users": [USER], "idle_longer_than": idle}],
        "limits": {"max_terminations": 1000, "max_fraction": 1.0},
    }


def _reaction(fleet, server, trials, interval, idle):
    """Seconds from 'idle longer than `idle`' to gone, for each trial."""
    waits = []
    for _trial in range(trials):
        time.sleep(random.uniform(0, interval))
        ghost = holder.open_session(fleet, server, "idle", user=USER, application="bench-eda-ghost", seconds=600)
        victim_at = time.monotonic() + idle
        try:
            while ghost.alive():
                if time.monotonic() - victim_at > 10 * interval + 120:
                    raise RuntimeError(f"the ghost on {server} was not ended")
                time.sleep(0.05)
            waits.append(time.monotonic() - victim_at)
        finally:
            ghost.close()
    return waits


def bench_rulebook(fleet, server, trials, interval, idle, directory):
    inventory = _inventory(
        fleet,
        directory,
        [(server, server)],
        _ghost_policy(idle),
        dbhygiene_watch_interval=interval,
        dbhygiene_report_dir=os.path.join(directory, "reports"),
        dbhygiene_audit_log=os.path.join(directory, "audit.jsonl"),
    )
    env = dict(os.environ, DBHYGIENE_INVENTORY=inventory, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    argv = [shutil.which("ansible-rulebook", path=env["PATH"]), "-r", "dbhygiene.sessions.session_hygiene"]
    argv += ["-i", inventory, "-E", "DBHYGIENE_INVENTORY"]
    log = open(os.path.join(directory, "rulebook.log"), "w")
    proc = subprocess.Popen(argv, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _reaction(fleet, server, 1, interval, idle)  # warm up: the rulebook is running and acting
        return _reaction(fleet, server, trials, interval, idle)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def bench_pt_kill(fleet, server, trials, interval, idle):
    argv = pt_kill_argv(fleet, server, "--idle-time", str(int(idle)), "--interval", f"{interval:g}")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _reaction(fleet, server, 1, interval, idle)
        return _reaction(fleet, server, trials, interval, idle)
    finally:
        proc.terminate()
        proc.wait(10)


def bench_source(fleet, counts, directory):
    servers = [s["name"] for s in fleet.servers]
    print("\nsource: one poll of N hosts (all at once), per host")
    print(f"{'hosts':>6} {'wall s':>8} {'wall ms/host':>13} {'CPU s':>7} {'CPU ms/host':>12}")
    for count in counts:
        hosts = [(f"h{i:04d}", servers[i % len(servers)]) for i in range(count)]
        inventory = _inventory(fleet, os.path.join(directory, f"source-{count}"), hosts, _ghost_policy(30))
        watches = session_watch.load_hosts(inventory)

        class Queue(object):
            async def put(self, event):
                pass

        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(session_watch.poll_once(Queue(), watches))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        failed = [w.name for w in watches if w.reachable is False]
        note = f"  ({len(failed)} failed)" if failed else ""
        print(f"{count:>6} {wall:>8.2f} {1000 * wall / count:>13.1f} {cpu:>7.2f} {1000 * cpu / count:>12.1f}{note}")


def _line(name, waits):
    return (
        f"{name:<34} median {statistics.median(waits):6.2f} s   min {min(waits):6.2f} s   max {max(waits):6.2f} s"
        f"   ({len(waits)} trials)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="mariadb2")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--skip-reaction", action="store_true")
    args = parser.parse_args()
    fleet = fleet_state.load(os.environ.get("DBFLEET_STATE_DIR"))
    directory = tempfile.mkdtemp(prefix="bench-eda-")
    print(f"bench_eda: {args.server}, interval {args.interval:g} s, victim when idle > {args.idle:g} s")
    if not args.skip_reaction:
        print("\nreaction: from 'idle longer than the threshold' to the session gone")
        print(
            _line(
                "rulebook (source + enforce run)",
                bench_rulebook(fleet, args.server, args.trials, args.interval, args.idle, directory),
            )
        )
        if shutil.which("pt-kill"):
            print(_line("pt-kill daemon", bench_pt_kill(fleet, args.server, args.trials, args.interval, args.idle)))
        else:
            print("pt-kill: not installed (apt-get install percona-toolkit)")
    if args.hosts:
        bench_source(fleet, args.hosts, directory)


if __name__ == "__main__":
    main()
