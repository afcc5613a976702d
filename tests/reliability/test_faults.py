# -*- coding: utf-8 -*-
"""Faults through ansible-playbook: a server frozen (SIGSTOP) before a run, one
frozen during a run, one stopped mid-run (pg2 and mariadb2 each time; pg1 and
mariadb1 stay healthy).

Asserted (what holds today): the play ends (a frozen server is thawed after
RELIABILITY_FREEZE_CAP s if the play still waits for it: 40 s, or the drivers'
query_timeout + 18 s when they have one), the healthy hosts' results are all
there and right, and no traceback reaches the output. When the drivers have
`query_timeout`, the play must also end before the thaw (a hang is a failure,
whatever the speed) and no faulty host may fail with an unhandled exception.
Printed: how long each play and host took, the bound, and what the result and
the trail hold for the sessions a stopped host had ended.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from _common import (
    ENFORCE,
    ROOT,
    Play,
    driver_module,
    figure,
    new_tag,
    read_trail,
    supports,
    tracebacks,
    wait_until,
    write_inventory,
)
from dbfleet import faults, holder, mariadb, postgres

HEALTHY = ("pg1", "mariadb1")
FAULTY = ("pg2", "mariadb2")
CONNECT_TIMEOUT = 3
GRACE = 15
IDLE_GHOSTS = 3


# ------------------------------------------------------------------ server processes
def _server_pids(server):
    return faults.server_pids(server)


def freeze(server):
    """SIGSTOP the server: the kernel still completes TCP handshakes, nothing answers."""
    stopped = []
    for pid in _server_pids(server):  # the postmaster first: no new backend is forked meanwhile
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:  # a backend that ended since it was listed
            continue
        stopped.append(pid)
    return stopped


def thaw(pids):
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def stop_hard(server):
    """Immediate stop: PostgreSQL immediate shutdown, MariaDB SIGKILL."""
    module = postgres if server["engine"] == "postgresql" else mariadb
    pid = module.running_pid(server)
    os.kill(pid, signal.SIGQUIT if server["engine"] == "postgresql" else signal.SIGKILL)
    wait_until(lambda: module.running_pid(server) is None, timeout=30)


def restart(fleet):
    counts = (str(len(fleet.by_engine("postgresql"))), str(len(fleet.by_engine("mysql"))))
    subprocess.run(
        [sys.executable, "-m", "dbfleet", "--state-dir", fleet.state_dir, "up", "--postgres", counts[0]]
        + ["--mariadb", counts[1], "--first", str(fleet.data.get("first", 1))],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools")),
    )


class Watchdog(object):
    """Thaw each frozen server FREEZE_CAP s after it was frozen, so a hanging play ends; note whether it had to."""

    def __init__(self):
        self.frozen = []  # (when frozen, pids)
        self.thawed_by_cap = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, pids):
        with self.lock:
            self.frozen.append((time.monotonic(), pids))

    def _run(self):
        while not self.done.wait(0.2):
            with self.lock:
                due = [entry for entry in self.frozen if time.monotonic() - entry[0] > FREEZE_CAP]
                for entry in due:
                    thaw(entry[1])
                    self.frozen.remove(entry)
                    self.thawed_by_cap = True

    def stop(self):
        self.done.set()
        self.thread.join(5)
        with self.lock:
            for _when, pids in self.frozen:
                thaw(pids)
            self.frozen = []


# ------------------------------------------------------------------ scenario
def _policy(tag):
    return {
        "name": "faults-" + tag,
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},  # a stress test, not a limits test
        "grace": GRACE,
        "rules": [
            {"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1},
            {
                "name": "stubborn",
                "states": ["active"],
                "applications": [tag + "-stubborn"],
                "running_longer_than": 1,
                "action": "cancel_then_terminate",
            },
        ],
    }


def _scenario(fleet, tmp_path, name):
    tag = new_tag(name)
    directory = tmp_path / name
    directory.mkdir()
    group_vars = {
        "dbhygiene_policy": _policy(tag),
        "dbhygiene_report_dir": str(directory / "reports"),
        "dbhygiene_audit_log": str(directory / "audit.jsonl"),
        "dbhygiene_wait_timeout": 10,
        "dbhygiene_connect_timeout": CONNECT_TIMEOUT,
    }
    inventory = write_inventory(fleet, directory, group_vars, hosts=HEALTHY + FAULTY)
    held = {}
    for host in HEALTHY + FAULTY:
        held[host] = [
            holder.open_session(fleet, host, "idle", application=tag + "-ghost", seconds=300)
            for _n in range(IDLE_GHOSTS)
        ]
        if host in FAULTY:
            held[host].append(
                holder.open_session(fleet, host, "active_ignores_cancel", application=tag + "-stubborn", seconds=300)
            )
    time.sleep(1.5)
    return tag, directory, inventory, held


def _close(held):
    for sessions in held.values():
        for session in sessions:
            try:
                session.close()
            except Exception:
                pass


def _idle_ghosts_gone(fleet, held, host):
    ids = [s.id for s in held[host] if s.kind == "idle"]
    return not holder.live(fleet.server(host), ids)


def _check_healthy(play):
    results = play.host_results()
    for host in HEALTHY:
        assert host in results, "no result for healthy host %s:\n%s" % (host, play.output[-3000:])
        assert not results[host].get("failed"), results[host].get("msg")
        assert len(results[host].get("terminated") or []) == IDLE_GHOSTS, results[host]
    found = tracebacks(play.output)
    assert not found, "unhandled exception in the output: %s\n%s" % (found[:3], play.output[-4000:])


def _bound():
    timeouts = []
    for engine in ("postgresql", "mysql"):
        if supports(engine, "query_timeout"):
            spec = driver_module(engine).connection_argument_spec()["query_timeout"]
            timeouts.append("%s query_timeout %s s" % (engine, spec.get("default")))
        else:
            timeouts.append("%s: no query_timeout in this build" % engine)
    return "connect_timeout %d s; %s" % (CONNECT_TIMEOUT, "; ".join(timeouts))


def _bounded():
    return supports("postgresql", "query_timeout") and supports("mysql", "query_timeout")


def _freeze_cap():
    """How long a server stays frozen at most: 40 s, or well past the drivers' own bound when they have one."""
    if "RELIABILITY_FREEZE_CAP" in os.environ:
        return float(os.environ["RELIABILITY_FREEZE_CAP"])
    cap = 40.0
    for engine in ("postgresql", "mysql"):
        if supports(engine, "query_timeout"):
            default = driver_module(engine).connection_argument_spec()["query_timeout"].get("default") or 30
            cap = max(cap, CONNECT_TIMEOUT + float(default) + 15)
    return cap


FREEZE_CAP = _freeze_cap()


def _unhandled(result):
    """The host's result shows an exception that escaped the collection's code (not a handled failure)."""
    exception = str(result.get("exception") or "")
    return "Traceback" in exception or str(result.get("msg") or "").startswith("Task failed")


def _check_faulty(play):
    """Once the drivers are fault-hardened (they have query_timeout), a faulty host fails cleanly."""
    if not _bounded():
        return
    for host, result in play.host_results().items():
        assert not _unhandled(result), "%s: unhandled exception: %s" % (host, result.get("msg"))


def _faulty_outcome(play):
    results = play.host_results()
    shown = []
    for host in FAULTY:
        result = results.get(host)
        if result is None:
            shown.append("%s: no result" % host)
        elif result.get("failed"):
            shown.append(
                "%s failed after %.0f s%s: %s"
                % (
                    host,
                    result["seconds"],
                    " (an unhandled exception)" if _unhandled(result) else "",
                    str(result.get("msg"))[:160],
                )
            )
        else:
            shown.append(
                "%s ok after %.0f s (%d terminated)" % (host, result["seconds"], len(result.get("terminated") or []))
            )
    return "; ".join(shown)


def test_servers_frozen_before_the_run(fleet, tmp_path):
    tag, _directory, inventory, held = _scenario(fleet, tmp_path, "frozen-before")
    watchdog = Watchdog()
    try:
        for host in FAULTY:
            watchdog.add(freeze(fleet.server(host)))
        play = Play(inventory, playbook=ENFORCE).wait(300)
    finally:
        watchdog.stop()
        _close(held)
    figure(
        "fault: pg2 and mariadb2 frozen before the run: the play ended after %.0f s%s (bound: %s); %s"
        % (
            play.seconds,
            ", only once the servers were thawed (%.0f s cap)" % FREEZE_CAP if watchdog.thawed_by_cap else "",
            _bound(),
            _faulty_outcome(play),
        )
    )
    _check_healthy(play)
    _check_faulty(play)
    for host in FAULTY:
        assert host in play.host_results(), "no result for the frozen host %s" % host
    if _bounded():
        assert not watchdog.thawed_by_cap, "the play waited for the frozen servers until they were thawed"


def test_servers_frozen_during_the_run(fleet, tmp_path):
    tag, _directory, inventory, held = _scenario(fleet, tmp_path, "frozen-during")
    watchdog = Watchdog()
    try:
        play = Play(inventory, playbook=ENFORCE)
        pending = list(FAULTY)
        # Freeze each faulty server as soon as its idle ghosts were ended: the run is
        # then cancelling the stubborn session and waiting out its grace.
        frozen_at = {}
        while pending and play.running() and time.monotonic() - play.started < 120:
            for host in list(pending):
                if _idle_ghosts_gone(fleet, held, host):
                    watchdog.add(freeze(fleet.server(host)))
                    frozen_at[host] = time.monotonic() - play.started
                    pending.remove(host)
            time.sleep(0.01)
        play.wait(300)
    finally:
        watchdog.stop()
        _close(held)
    figure(
        "fault: pg2 and mariadb2 frozen during the run (after the first kills, in the grace wait, at %s): the play "
        "ended after %.0f s%s (bound: %s; grace %d s); %s"
        % (
            ", ".join("%s %.1f s" % item for item in sorted(frozen_at.items())) or "never",
            play.seconds,
            ", only once the servers were thawed (%.0f s cap)" % FREEZE_CAP if watchdog.thawed_by_cap else "",
            _bound(),
            GRACE,
            _faulty_outcome(play),
        )
    )
    assert not pending, "the run never ended the idle ghosts of %s" % pending
    _check_healthy(play)
    _check_faulty(play)
    for host in FAULTY:
        assert host in play.host_results(), "no result for the frozen host %s" % host
    if _bounded():
        assert not watchdog.thawed_by_cap, "the play waited for the frozen servers until they were thawed"


def test_servers_stopped_mid_run(fleet, tmp_path):
    tag, directory, inventory, held = _scenario(fleet, tmp_path, "stopped")
    stopped = []
    try:
        play = Play(inventory, playbook=ENFORCE)
        pending = list(FAULTY)
        while pending and play.running() and time.monotonic() - play.started < 120:
            for host in list(pending):
                if _idle_ghosts_gone(fleet, held, host):
                    stop_hard(fleet.server(host))
                    stopped.append(host)
                    pending.remove(host)
            time.sleep(0.01)
        play.wait(300)
    finally:
        restart(fleet)
        _close(held)
    records, garbled = read_trail(str(directory / "audit.jsonl"))
    results = play.host_results()
    lost = []
    for host in stopped:
        in_trail = len([r for r in records if r.get("host") == host and r.get("outcome") in ("terminated", "unknown")])
        result = results.get(host) or {}
        in_result = len(result.get("terminated") or []) + len(result.get("unknown") or [])
        lost.append(
            "%s: %d ended before the stop, %d in its result, %d in the trail (terminated or unknown)"
            % (host, IDLE_GHOSTS, in_result, in_trail)
        )
    figure(
        "fault: pg2 and mariadb2 stopped mid-run (after the first kills): the play ended after %.0f s; %s; %s"
        % (play.seconds, _faulty_outcome(play), "; ".join(lost))
    )
    assert not play.timed_out
    assert not pending, "the run never ended the idle ghosts of %s" % pending
    assert not garbled
    _check_healthy(play)
    _check_faulty(play)
    for host in FAULTY:
        assert host in results, "no result for the stopped host %s" % host
        assert results[host].get("failed"), "the stopped host %s did not fail: %r" % (host, results[host])
