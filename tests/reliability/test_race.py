# -*- coding: utf-8 -*-
"""The flipping-sessions race (issue 8): never end a session that moved on.

50 victims per server: 25 stay idle, 25 flip between a few ms of idle and a
10 ms statement or a short transaction. Sweeps end idle sessions
(`idle_longer_than: 0`) through the runner with the real driver (many kills per
minute) and through ansible-playbook (the role, as users run it). A wrong kill
is a session ended while it was in a statement or a transaction:

- PostgreSQL, from the server log: the victim's `FATAL: terminating connection
  due to administrator command` line followed by its `STATEMENT:` (in a
  statement), or with a virtual transaction id `N/M`, M > 0 (in a transaction);
- MariaDB, from the general log (microsecond times): the victim's last
  statement was a transaction's (no COMMIT after it), or a 10 ms statement that
  began less than 10 ms before the sweep's KILL naming it (or after it);
- both, from the flippers' own records (what the session was doing when the
  server closed it), printed beside.

Figures are printed; what is asserted is that the wrong kills stay within the
window each engine leaves (see allowed_wrong(); RELIABILITY_ALLOWED_WRONG_KILLS
overrides it with a fixed count) and that enough kills were seen.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from _common import (
    ENFORCE,
    HERE,
    ROOT,
    CpuHogs,
    Play,
    admin_execute,
    driver_module,
    driver_params,
    figure,
    load_average,
    log_since,
    log_size,
    new_tag,
    not_ended,
    write_inventory,
)

SERVERS = {"postgresql": "pg1", "mysql": "mariadb1"}
TARGET_KILLS = int(os.environ.get("RELIABILITY_RACE_KILLS", "1000"))
RACE_SECONDS = float(os.environ.get("RELIABILITY_RACE_SECONDS", "75"))
PLAY_KILLS = int(os.environ.get("RELIABILITY_RACE_PLAY_KILLS", "500"))
MAX_PLAYS = int(os.environ.get("RELIABILITY_RACE_MAX_PLAYS", "30"))
# The window each guard leaves, as a share of kills (docs/guides/guarantees-and-races.md, "The guarded
# kill"): PostgreSQL's is the few microseconds from a victim's fresh read to its signal inside one statement
# (measured 0 in 1,005 + 522 here, 0 in 1,544 in tests/integration); MariaDB's adds the
# InnoDB transaction cache and a BEGIN that has touched no table yet (measured 6 in 1,012 and
# 1 in 500). The guards they replaced made 4-9 % (PostgreSQL) and 10 % (MariaDB): both bounds
# fail on them.
ALLOWED_WRONG_RATE = {"postgresql": 0.003, "mysql": 0.015}


# With two CPU hogs beside the race (test_race_through_the_runner_on_a_busy_machine) the same
# bounds: measured 0 in 1,012 (PostgreSQL) and 0 in 1,023 (MariaDB) beside stress-ng --cpu 2 at
# load average 21-28 on 2 cores (the runner's 1,000 kills took 10-20 s, as unloaded).
LOADED_RACE_SECONDS = float(os.environ.get("RELIABILITY_RACE_LOADED_SECONDS", "120"))


def allowed_wrong(engine, kills):
    fixed = os.environ.get("RELIABILITY_ALLOWED_WRONG_KILLS")
    if fixed is not None:
        return int(fixed)
    return int(ALLOWED_WRONG_RATE[engine] * kills)


STEADY = int(os.environ.get("RELIABILITY_RACE_STEADY", "25"))
FLIPPERS = int(os.environ.get("RELIABILITY_RACE_FLIPPERS", "25"))
STATEMENT_SECONDS = 0.01


def race_policy(prefix):
    return {
        "name": "race-" + prefix,
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},  # a stress test, not a limits test
        "rules": [{"name": "idle", "states": ["idle"], "applications": [prefix + "-*"], "idle_longer_than": 0}],
    }


# ----------------------------------------------------------------- the workload
class Workload(object):
    def __init__(self, fleet, server_name, prefix, tmp_path):
        self.out = str(tmp_path / ("workload-%s.json" % server_name))
        argv = [
            sys.executable,
            os.path.join(HERE, "_workload.py"),
            "--server",
            server_name,
            "--prefix",
            prefix,
            "--steady",
            str(STEADY),
            "--flippers",
            str(FLIPPERS),
            "--seconds",
            "600",
            "--out",
            self.out,
        ]
        env = dict(os.environ, DBFLEET_STATE_DIR=fleet.state_dir, PYTHONPATH=os.path.join(ROOT, "tools"))
        # libpq prints each unsolicited FATAL of an idle session on stderr: keep it in a file.
        self.stderr = open(self.out + ".stderr", "w")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL, env=env, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready", "the workload did not start"
        time.sleep(1.5)  # every session connected and flipping

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        with open(self.out) as handle:
            return json.load(handle)


# ----------------------------------------------------------------- server-side evidence
_PG_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] \S*@\S* app=(\S*) vxid=(\d+)/(\d+) xid=(\d+) (\w+):\s+(.*)$")


class PostgresEvidence(object):
    """Kills of the victims, read from the server log after the race."""

    def __init__(self, server, prefix):
        self.server, self.prefix = server, prefix
        self.offset = log_size(server["log"])

    def kills(self, workload_record):
        lines = log_since(self.server["log"], self.offset).splitlines()
        kills = []
        by_pid = {}
        for line in lines:
            found = _PG_LINE.match(line)
            if not found:
                continue
            pid, app, _backend, lxid, _xid, level, message = found.groups()
            if not app.startswith(self.prefix + "-"):
                continue
            if level == "FATAL" and "terminating connection due to administrator command" in message:
                kill = {"pid": int(pid), "application": app, "where": "transaction" if int(lxid) else "idle"}
                kills.append(kill)
                by_pid[pid] = kill
            elif level == "STATEMENT" and pid in by_pid:
                by_pid.pop(pid)["where"] = "statement"
        return kills


_KILL_WORD = r"(?<![0-9])%d(?![0-9])"


class MariaDBEvidence(object):
    """Kills of the victims, read from the general log (TABLE output, microsecond times)."""

    def __init__(self, server, prefix):
        self.server, self.prefix = server, prefix
        admin_execute(server, "SET GLOBAL general_log = 0")
        admin_execute(server, "SET GLOBAL log_output = 'TABLE'")
        admin_execute(server, "TRUNCATE TABLE mysql.general_log")
        admin_execute(server, "SET GLOBAL general_log = 1")

    def kills(self, workload_record):
        admin_execute(self.server, "SET GLOBAL general_log = 0")
        sessions = dict((s["id"], s) for s in workload_record["sessions"])
        rows = admin_execute(
            self.server,
            "SELECT UNIX_TIMESTAMP(event_time), thread_id, user_host, command_type, CONVERT(argument USING utf8mb4)"
            " FROM mysql.general_log ORDER BY event_time",
        )
        admin_execute(self.server, "TRUNCATE TABLE mysql.general_log")
        by_thread, sweeps = {}, []
        for when, thread, user_host, command, argument in rows:
            if thread in sessions:
                by_thread.setdefault(thread, []).append((float(when), command, argument or ""))
            elif (user_host or "").startswith("hygiene[") and command == "Query":
                sweeps.append((float(when), argument or ""))
        kills = []
        for thread, entries in by_thread.items():
            if any(command == "Quit" for _w, command, _a in entries):
                continue  # closed by the client at the end: not killed
            pattern = re.compile(_KILL_WORD % thread)
            mentions = [w for w, text in sweeps if "KILL" in text.upper() and pattern.search(text)]
            killed_at = mentions[-1] if mentions else None
            last_when, _command, last = entries[-1]
            text = last.strip().upper()
            if text.startswith("START TRANSACTION") or text.startswith("INSERT INTO REL_FLIP"):
                where = "transaction"
            elif text.startswith("SELECT SLEEP") and (killed_at is None or last_when + STATEMENT_SECONDS > killed_at):
                where = "statement"
            elif text.startswith("COMMIT") and killed_at is not None and last_when >= killed_at - 0.001:
                where = "statement"
            else:
                where = "idle"
            kills.append({"id": thread, "application": sessions[thread]["application"], "where": where})
        return kills


EVIDENCE = {"postgresql": PostgresEvidence, "mysql": MariaDBEvidence}


# ----------------------------------------------------------------- figures
def _tally(kills):
    counts = {"idle": 0, "statement": 0, "transaction": 0, "connect": 0}
    for kill in kills:
        counts[kill["where"]] += 1
    return counts


def report(engine, how, kills, record, extra):
    server_view = _tally(kills)
    wrong = server_view["statement"] + server_view["transaction"]
    flipper_view = _tally([{"where": d["doing"]} for d in record["deaths"]])
    flipper_wrong = flipper_view["statement"] + flipper_view["transaction"]
    flip_kills = len([k for k in kills if "-flip-" in k["application"]])
    figure(
        "race %s via %s: %d wrong kills / %d kills (server log: %d in a statement, %d in a transaction; "
        "%d of the kills were flippers); flippers' own view: %d wrong / %d deaths (%d while connecting); %s"
        % (
            engine,
            how,
            wrong,
            len(kills),
            server_view["statement"],
            server_view["transaction"],
            flip_kills,
            flipper_wrong,
            len(record["deaths"]),
            flipper_view["connect"],
            extra,
        )
    )
    return wrong


def _start(fleet, engine, tmp_path):
    prefix = new_tag("race")
    server = fleet.server(SERVERS[engine])
    evidence = EVIDENCE[engine](server, prefix)
    workload = Workload(fleet, server["name"], prefix, tmp_path)
    return prefix, evidence, workload


def race_through_the_runner(fleet, engine, tmp_path, how, seconds):
    """Sweeps through the runner (real driver) until TARGET_KILLS kills or `seconds`; the
    figure (named `how`); (wrong kills, kills the server log shows, terminated, elapsed)."""
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy

    prefix, evidence, workload = _start(fleet, engine, tmp_path)
    policy = parse_policy(race_policy(prefix))
    terminated = state_changed = sweeps = 0
    load_before = load_average()
    started = time.monotonic()
    try:
        driver = driver_module(engine).open_driver(driver_params(fleet, SERVERS[engine]))
        try:
            driver.preflight(signal=True)
            while terminated < TARGET_KILLS and time.monotonic() - started < seconds:
                result = apply_policy(driver, policy, check_mode=False, wait_timeout=5)
                sweeps += 1
                terminated += len(result["terminated"])
                state_changed += len([s for s in not_ended(result) if s.get("reason") == "state_changed"])
                time.sleep(0.05)
        finally:
            driver.close()
        time.sleep(0.5)  # the last sweep's victims notice their end
    finally:
        record = workload.stop()
    elapsed = time.monotonic() - started
    kills = evidence.kills(record)
    wrong = report(
        engine,
        how,
        kills,
        record,
        "runner: %d terminated, %d not ended as state_changed, %d sweeps in %.0f s; load average %.1f, then %.1f"
        % (terminated, state_changed, sweeps, elapsed, load_before, load_average()),
    )
    assert len(kills) >= 0.9 * terminated, (
        "the server log shows %d kills, the runner reported %d: the harness lost kills"
        % (
            len(kills),
            terminated,
        )
    )
    return wrong, len(kills), terminated, elapsed


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_race_through_the_runner(fleet, engine, tmp_path):
    wrong, kills, terminated, elapsed = race_through_the_runner(
        fleet, engine, tmp_path, "the runner (apply_policy, real driver)", RACE_SECONDS
    )
    assert terminated >= 500, "only %d kills in %.0f s: raise RELIABILITY_RACE_SECONDS" % (terminated, elapsed)
    bound = allowed_wrong(engine, kills)
    assert wrong <= bound, "%d wrong kills in %d on %s (at most %d)" % (wrong, kills, engine, bound)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_race_through_the_runner_on_a_busy_machine(fleet, engine, tmp_path):
    """The same race with two CPU hogs beside it (the machine of a shared CI runner or a busy
    laptop): the servers, the flippers and the sweeps all get less CPU, and later."""
    with CpuHogs(2, LOADED_RACE_SECONDS + 60) as hogs:
        wrong, kills, terminated, elapsed = race_through_the_runner(
            fleet,
            engine,
            tmp_path,
            "the runner, with 2 CPU hogs beside it (%s)" % hogs.how,
            LOADED_RACE_SECONDS,
        )
    assert terminated >= 500, "only %d kills in %.0f s: raise RELIABILITY_RACE_LOADED_SECONDS" % (terminated, elapsed)
    bound = allowed_wrong(engine, kills)
    assert wrong <= bound, "%d wrong kills in %d on %s under load (at most %d)" % (wrong, kills, engine, bound)


def test_race_through_ansible_playbook(fleet, tmp_path):
    """Both engines at once, the enforce playbook run back to back until each engine saw PLAY_KILLS kills."""
    started = {}
    for engine in SERVERS:
        started[engine] = _start(fleet, engine, tmp_path)
    # One policy for both hosts: both prefixes.
    prefixes = [started[e][0] for e in SERVERS]
    policy = {
        "name": "race-play",
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},  # a stress test, not a limits test
        "rules": [
            {"name": "idle", "states": ["idle"], "applications": [p + "-*" for p in prefixes], "idle_longer_than": 0}
        ],
    }
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
        "dbhygiene_wait_timeout": 5,
    }
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=list(SERVERS.values()))
    terminated = dict((e, 0) for e in SERVERS)
    durations = []
    failures = []
    try:
        while min(terminated.values()) < PLAY_KILLS and len(durations) < MAX_PLAYS:
            play = Play(inventory, playbook=ENFORCE).wait(300)
            durations.append(play.seconds)
            if play.rc != 0:
                failures.append(play.output[-2000:])
            for host, result in play.host_results().items():
                engine = "postgresql" if host.startswith("pg") else "mysql"
                terminated[engine] += len(result.get("terminated") or [])
        time.sleep(0.5)  # the last sweep's victims notice their end
    finally:
        records = dict((e, started[e][2].stop()) for e in SERVERS)
    wrong = {}
    for engine in SERVERS:
        kills = started[engine][1].kills(records[engine])
        wrong[engine] = (
            report(
                engine,
                "ansible-playbook (the enforce role)",
                kills,
                records[engine],
                "%d plays, %d terminated, %.1f s per play"
                % (len(durations), terminated[engine], sum(durations) / len(durations)),
            ),
            len(kills),
        )
    assert not failures, failures[0]
    assert all(terminated.values()), terminated
    for engine, (count, kills) in wrong.items():
        bound = allowed_wrong(engine, kills)
        assert count <= bound, "%d wrong kills in %d on %s (at most %d)" % (count, kills, engine, bound)
