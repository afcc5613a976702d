# -*- coding: utf-8 -*-
"""The PostgreSQL driver under races and faults, on real servers of the fleet.

- The flipping-sessions race: victims flip between idle and short statements or
  short transactions while the driver ends the idle ones; a kill that hits a
  session in a statement or a transaction is a wrong kill, counted from the
  server's own log (``FATAL: terminating connection due to administrator
  command`` followed by ``STATEMENT:``) and from the flipper itself (its
  transaction died after BEGIN had succeeded).
- A frozen server (SIGSTOP: its kernel still ACKs TCP, so neither keepalives
  nor statement_timeout help) during connect, list and end: every call fails
  with SessionError within its bound instead of hanging. The server always gets
  SIGCONT in a finally.
- The sweep lock: two drivers on one server.

Figures are printed (run with -s to see them); the asserts are about outcomes,
never about how long something took, except that a call to a frozen server
returns at all (a bound ten times looser than the option).
"""

import contextlib
import os
import random
import re
import signal
import threading
import time

import psycopg2
import pytest
from conftest import wait_until

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _postgresql as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import SessionError
from dbfleet import postgres

pytest_plugins = ["_postgresql_fixtures"]

SERVER = "pg1"
FROZEN = "pg2"  # the server the freezing tests stop; never the one the race runs on


# ---------------------------------------------------------------- the flipping race
FLIP_STATEMENT = "SELECT pg_sleep(0.004) /* dbhygiene-flip */"


class Flipper(object):
    """One session flipping between idle (5-40 ms) and a 4 ms statement or a short
    transaction (BEGIN; SELECT; 4 ms idle in transaction; COMMIT) until it dies."""

    def __init__(self, fleet, application, kind):
        srv = fleet.server(SERVER)
        self.kind = kind
        self.conn = psycopg2.connect(
            host=srv["host"],
            port=srv["port"],
            user="app",
            password=fleet.password("app"),
            dbname="appdb",
            application_name=application,
            sslmode="disable",
        )
        self.conn.autocommit = True
        cur = self.conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        self.pid = cur.fetchone()[0]
        self.died_in_transaction = False
        self.dead = threading.Event()
        self.stop = threading.Event()
        self.rng = random.Random(self.pid)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        cur = self.conn.cursor()
        try:
            while not self.stop.is_set():
                time.sleep(self.rng.uniform(0.005, 0.040))
                if self.kind == "statement":
                    cur.execute(FLIP_STATEMENT)
                    continue
                cur.execute("BEGIN")
                try:
                    cur.execute("SELECT 1 /* dbhygiene-flip-tx */")
                    time.sleep(0.004)
                    cur.execute("COMMIT")
                except psycopg2.Error:
                    # BEGIN went through, so the session was in a transaction when it was ended.
                    self.died_in_transaction = True
                    raise
        except psycopg2.Error:
            pass
        finally:
            self.dead.set()
            try:
                self.conn.close()
            except Exception:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)


_FATAL_RE = re.compile(r"\[(\d+)\] \S+ FATAL:  terminating connection due to administrator command")
_STATEMENT_RE = re.compile(r"\[(\d+)\] \S+ STATEMENT:  ")


def killed_in_a_statement(log_text):
    """Pids the server log shows terminated in the middle of a statement."""
    found = set()
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        fatal = _FATAL_RE.search(line)
        if fatal and index + 1 < len(lines):
            statement = _STATEMENT_RE.search(lines[index + 1])
            if statement and statement.group(1) == fatal.group(1):
                found.add(int(fatal.group(1)))
    return found


def run_flipping_race(fleet, tag, driver, flippers=40, kills_wanted=300, seconds=30.0):
    """End idle flippers round after round; (kills, wrong kills, seconds)."""
    log_path = fleet.server(SERVER)["log"]
    log_start = os.path.getsize(log_path)
    kinds = ("statement", "transaction")
    live = [Flipper(fleet, "%s-flip-%d" % (tag, n), kinds[n % 2]) for n in range(flippers)]
    ended = {}  # pid -> Flipper
    kills = 0
    started = time.monotonic()
    try:
        while kills < kills_wanted and time.monotonic() - started < seconds:
            by_pid = {f.pid: f for f in live}
            idle = [s for s in driver.list_sessions() if s["id"] in by_pid and s["state"] == "idle"]
            for session, outcome, _detail in driver.end_sessions(idle, "terminate"):
                if outcome == "terminated":
                    kills += 1
                    ended[session["id"]] = by_pid[session["id"]]
            for flipper in list(live):
                if flipper.pid in ended:
                    flipper.dead.wait(5)
                    live.remove(flipper)
                    live.append(Flipper(fleet, "%s-flip-r%d" % (tag, kills), flipper.kind))
    finally:
        elapsed = time.monotonic() - started
        for flipper in live:
            flipper.close()
        fx_terminate_application(fleet, tag)
    time.sleep(0.5)  # the server's logger writes the last FATAL lines
    in_statement = killed_in_a_statement(_read_from(log_path, log_start)) & set(ended)
    in_transaction = {pid for pid, f in ended.items() if f.died_in_transaction}
    return kills, len(in_statement | in_transaction), elapsed


def _read_from(path, offset):
    with open(path, errors="replace") as f:
        f.seek(offset)
        return f.read()


def fx_terminate_application(fleet, tag):
    conn = fx.admin_connection(fleet, SERVER)
    try:
        conn.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (tag + "-flip-%",),
        )
    finally:
        conn.close()


def test_the_flipping_race_kills_no_session_in_a_statement_or_a_transaction(fleet, pg_tag):
    with fx.driver(fleet, SERVER) as d:
        kills, wrong, elapsed = run_flipping_race(fleet, pg_tag, d)
    print("\nflipping race: %d wrong kills in %d kills (%.1f s)" % (wrong, kills, elapsed))
    assert kills >= 100, "the race ended too few sessions to say anything (%d)" % kills
    assert wrong == 0, "%d of %d kills hit a session in a statement or a transaction" % (wrong, kills)
