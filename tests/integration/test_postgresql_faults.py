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
never about how fast something was, except that a call to a frozen server
returns within its bound (the option, plus five seconds of slack).
"""

import contextlib
import os
import random
import re
import signal
import subprocess
import threading
import time

import psycopg2
import pytest
from conftest import wait_until

pytest.register_assert_rewrite("_postgresql_fixtures")
import _postgresql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import guard
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from dbfleet import faults

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


def run_flipping_race(fleet, tag, driver, flippers=40, kills_wanted=1000, seconds=150.0):
    """End idle flippers round after round; (kills, wrong kills, seconds). Unloaded, the kills
    come first (1,000 in about 30 s); `seconds` only bounds a busy machine's run. (300 kills
    made the bound of 1 in 100 a matter of luck on a busy machine: 0-3 wrong in about 300,
    5 in 1,532 over five runs beside 2 CPU hogs.)"""
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
    # Measured: 0 in 1,544 kills; the guard read once per batch made 111 in 1,251 (9 in 100).
    # The window left inside one row (microseconds) is not zero, so the bound is 1 in 100, not 0.
    assert wrong * 100 <= kills, "%d of %d kills hit a session in a statement or a transaction" % (wrong, kills)


# ---------------------------------------------------------------- the guard reads afresh
def _busy_sessions(fleet, tag, count, stop):
    """`count` sessions changing state every few ms (SELECT 1 in a loop) until `stop` is set."""
    srv = fleet.server(SERVER)
    pids, threads = [], []
    for n in range(count):
        conn = psycopg2.connect(
            host=srv["host"],
            port=srv["port"],
            user="app",
            password=fleet.password("app"),
            dbname="appdb",
            application_name="%s-busy-%d" % (tag, n),
            sslmode="disable",
        )
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        pids.append(cur.fetchone()[0])

        def loop(conn=conn, cur=cur):
            try:
                while not stop.is_set():
                    cur.execute("SELECT 1")
                    time.sleep(0.003)
            finally:
                conn.close()

        threads.append(threading.Thread(target=loop, daemon=True))
    for thread in threads:
        thread.start()
    return pids, threads


def _state_change_span(driver, sql, params):
    """Seconds between the oldest and the newest state_change the end statement read."""
    rows = driver._query((sql, params), "read the guard rows")[1]
    changes = [row[5] for row in rows]
    assert all(change is not None for change in changes), rows
    return (max(changes) - min(changes)).total_seconds()


ROW_SECONDS = 0.4


def test_the_guard_reads_each_victim_afresh(fleet, pg_tag):
    """The driver's own end statement, its rows slowed down to 400 ms each: each row
    must see its backend as it is then, not as it was when the statement began."""
    stop = threading.Event()
    pids, threads = _busy_sessions(fleet, pg_tag, 5, stop)
    try:
        with fx.driver(fleet, SERVER) as d:
            listed = {s["id"]: s for s in d.list_sessions() if s["id"] in pids}
        # Planned as idle since 2000: every guard fails (state_changed), nothing is signalled.
        guards = [(pid, listed[pid]["connected_at"], "idle", "2000-01-01T00:00:00+00:00") for pid in pids]
        sql, params = guard.end_query(guards, "cancel")
        assert guard._VICTIMS_SQL in sql
        slowed = sql.replace(
            guard._VICTIMS_SQL,
            "(SELECT w.*, pg_sleep(%s) AS slow FROM %s) AS v"
            % (ROW_SECONDS, guard._VICTIMS_SQL.replace(" AS v(", " AS w(")),
        )
        # The same statement without the per-row clear: one snapshot for the whole statement.
        unfresh = slowed.replace("pg_stat_clear_snapshot() AS cleared, ", "")
        assert unfresh != slowed
        with fx.driver(fleet, SERVER) as d:
            fresh_span = _state_change_span(d, slowed, params)
            unfresh_span = _state_change_span(d, unfresh, params)
            outcomes = d._query((sql, params), "end")[1]
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    print(
        "\nstate_change span over 5 rows %.1f s apart: %.3f s fresh, %.3f s read once"
        % (ROW_SECONDS, fresh_span, unfresh_span)
    )
    assert [row[1] for row in outcomes] == ["state_changed"] * len(pids)
    # Fresh: four gaps of ROW_SECONDS, less how long ago a busy session last changed state when read;
    # read once: a few ms, up to that staleness (0.12 s measured with 2 CPU hogs beside, as a busy session
    # waits for the CPU). Half the fresh span parts them while the staleness stays under 2 * ROW_SECONDS.
    assert fresh_span > 2 * ROW_SECONDS
    assert unfresh_span < 2 * ROW_SECONDS


# ---------------------------------------------------------------- a frozen server
def _server_pids(server):
    """The postmaster of `server` and every process it forked."""
    return faults.server_pids(server)


THAW_AFTER_SECONDS = 60  # the watchdog's bound, should this test process die while the server is frozen


@contextlib.contextmanager
def frozen(fleet, name=FROZEN):
    """The whole server stopped with SIGSTOP (postmaster first: it forks no one new), always resumed:
    in a finally, and by a watchdog process should this one be killed before its finally runs."""
    server = fleet.server(name)
    stopped = []
    watchdog = None
    try:
        for _pass in range(2):  # the second pass: anything forked meanwhile
            for pid in _server_pids(server):
                if pid not in stopped:
                    try:
                        os.kill(pid, signal.SIGSTOP)
                    except ProcessLookupError:  # a backend that was just ending
                        continue
                    stopped.append(pid)
        watchdog = subprocess.Popen(
            ["sh", "-c", "sleep %d; kill -CONT %s" % (THAW_AFTER_SECONDS, " ".join(str(pid) for pid in stopped))],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield server
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if watchdog is not None:
            os.killpg(watchdog.pid, signal.SIGTERM)
            watchdog.wait()


def _fails_within(bound, call):
    started = time.monotonic()
    with pytest.raises(SessionError) as info:
        call()
    elapsed = time.monotonic() - started
    print("\nfailed after %.2f s (bound %s s): %s" % (elapsed, bound, info.value))
    assert elapsed < bound + 5, "the call took %.1f s against a bound of %s s" % (elapsed, bound)
    return info.value


def test_connect_to_a_frozen_server_fails_within_connect_timeout(fleet):
    params = fx.conn_params(fleet, FROZEN, connect_timeout=2)
    with frozen(fleet):
        error = _fails_within(2, lambda: pg.open_driver(params))
    assert "no answer within 2 s (connect_timeout)" in str(error)
    assert fleet.server(FROZEN)["host"] in str(error)


def test_list_on_a_frozen_server_fails_within_query_timeout(fleet):
    d = pg.open_driver(fx.conn_params(fleet, FROZEN, query_timeout=2))
    try:
        with frozen(fleet):
            error = _fails_within(3, d.list_sessions)
        assert "cannot list sessions" in str(error) and "no answer within 2 s (query_timeout)" in str(error)
        with pytest.raises(SessionError, match="is closed"):
            d.list_sessions()  # never a second statement on a connection we gave up on
    finally:
        d.close()


class _FreezingDriver(pg.PostgreSQLDriver):
    """Freezes the server after its first batch (the ExitStack thaws it)."""

    def __init__(self, inner, freeze):
        self.__dict__.update(inner.__dict__)
        self._freeze = freeze
        self._batches = 0

    def _end_batch(self, guards, mode):
        self._batches += 1
        if self._batches == 2:
            self._freeze()
        return super()._end_batch(guards, mode)


def test_end_on_a_frozen_server_fails_within_query_timeout_and_keeps_what_it_knows(fleet, pg_held, pg_tag, monkeypatch):
    first = pg_held(FROZEN, "idle", application=pg_tag + "-first")
    second = pg_held(FROZEN, "idle", application=pg_tag + "-second")
    monkeypatch.setattr(pg, "BATCH_SIZE", 1)
    with contextlib.ExitStack() as stack:
        d = stack.enter_context(pg.open_driver(fx.conn_params(fleet, FROZEN, query_timeout=2)))
        planned = {s["id"]: s for s in d.list_sessions() if (s["application"] or "").startswith(pg_tag)}
        freezing = _FreezingDriver(d, lambda: stack.enter_context(frozen(fleet)))
        error = _fails_within(3, lambda: freezing.end_sessions([planned[first.id], planned[second.id]], "terminate"))
    assert "cannot terminate sessions" in str(error) and "no answer within 2 s (query_timeout)" in str(error)
    assert "1 session(s) of the statement in flight may or may not have been signalled, 0 were not tried" in str(error)
    # The signal that went out before the freeze is not lost: the runner can record it.
    assert error.outcomes == [(planned[first.id], "terminated", None)]
    assert wait_until(lambda: not first.alive())


def test_a_frozen_server_is_one_host_not_the_driver(fleet):
    """After the freeze the server answers again and a new driver works."""
    with frozen(fleet):
        pass
    with fx.driver(fleet, FROZEN) as d:
        assert d.server_facts()["own_pid"] == d.own_id


# ---------------------------------------------------------------- one sweep per server
def test_the_sweep_lock_is_held_by_one_driver_at_a_time(fleet):
    first = pg.open_driver(fx.conn_params(fleet, SERVER))
    second = pg.open_driver(fx.conn_params(fleet, SERVER))
    try:
        assert first.acquire_sweep_lock(0) is True
        assert first.acquire_sweep_lock(0) is True  # ours already
        assert second.acquire_sweep_lock(0.6) is False
        first.release_sweep_lock()
        assert second.acquire_sweep_lock(2) is True
        assert first.acquire_sweep_lock(0) is False
        second.close()  # closing releases it
        assert wait_until(lambda: first.acquire_sweep_lock(0))
        first.release_sweep_lock()
        first.release_sweep_lock()  # releasing twice is harmless
    finally:
        first.close()
        second.close()
