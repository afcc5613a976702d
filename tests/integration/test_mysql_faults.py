# -*- coding: utf-8 -*-
"""The MySQL/MariaDB driver under races and faults, on real MariaDB servers of the fleet.

- The flipping race: sessions that flip between Sleep and short statements or
  short transactions while the driver ends the idle ones; a kill that hits one
  in a statement or a transaction is a wrong kill.
- Frozen servers (SIGSTOP, always SIGCONT in a finally): connect, list and kill
  fail with SessionError within the bound, never hang.
- A restarted server: planned sessions are `gone`, not `state_changed`.
- The sweep lock, UTF-8 passwords, hostile connection options.
"""

import contextlib
import os
import random
import select
import signal
import threading
import time

import pymysql
import pytest
from conftest import busy_machine, wait_until
from dbfleet import mariadb

pytest.register_assert_rewrite("_mysql_fixtures")
import _mysql_fixtures as fx  # noqa: I001 (after register_assert_rewrite)

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import flavours as my_flavours  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import guard as my_guard  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError  # noqa: E402

pytest_plugins = ["_mysql_fixtures"]

# The second server of the fleet: freezing or restarting it leaves mariadb1 to the other tests.
VICTIM_SERVER = "mariadb2"


# ------------------------------------------------------------ the flipping race
class Flipper(object):
    """One session that flips between Sleep (10-50 ms) and a 10 ms statement or a
    short transaction, and counts how it was ended. Reconnects after each kill."""

    def __init__(self, fleet, server, tag, slot, stop, pace=None):
        self.fleet, self.server, self.tag, self.slot, self.stop = fleet, server, tag, slot, stop
        self.pace = pace or [1.0]  # the long idle stretches' factor (run_flipping_race's `paced`)
        self.idle_kills = 0
        self.statement_kills = 0
        self.transaction_kills = 0
        self.cycles = 0
        self.errors = []
        # (thread id, marker of the statement that failed) of the kills seen in a statement
        self.statement_victims = []
        self.rng = random.Random(slot)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self):
        srv = self.fleet.server(self.server)
        return pymysql.connect(
            host=srv["host"],
            port=srv["port"],
            user="app",
            password=self.fleet.password("app"),
            database="appdb",
            autocommit=True,
            program_name=self.tag,
            ssl_disabled=True,
        )

    @staticmethod
    def _killed_while_idle(conn):
        # The server closed the connection (and maybe sent an error packet) while we
        # sent nothing: readable before we send.
        readable, dummy, dummy2 = select.select([conn._sock], [], [], 0)
        return bool(readable)

    def _run(self):
        conn = self._connect()
        while not self.stop.is_set():
            # Mostly a few ms idle (too young to end: the driver needs IDLE_PROOF_SECONDS of
            # planned idleness), now and then long enough to be a victim.
            time.sleep(
                self.rng.uniform(0.01, 0.05) if self.rng.random() < 0.6 else self.rng.uniform(0.16, 0.4) * self.pace[0]
            )
            if self._killed_while_idle(conn):
                self.idle_kills += 1
                conn = self._reconnect(conn)
                continue
            in_transaction = False
            marker = "flip %d:%d" % (self.slot, self.cycles)
            try:
                cur = conn.cursor()
                if self.rng.random() < 0.5:
                    cur.execute("SELECT SLEEP(0.01) /* %s */" % marker)
                else:
                    cur.execute("BEGIN")
                    in_transaction = True
                    cur.execute("UPDATE flip SET n = n + 1 WHERE id = %s", (self.slot,))
                    # Mostly short, now and then idle in the transaction longer than the proof.
                    time.sleep(0.01 if self.rng.random() < 0.8 else 0.2)
                    if self._killed_while_idle(conn):
                        raise pymysql.err.OperationalError(2013, "killed inside the transaction")
                    cur.execute("COMMIT")
                    in_transaction = False
                self.cycles += 1
            except pymysql.MySQLError as exc:
                if in_transaction:
                    self.transaction_kills += 1
                else:
                    self.statement_kills += 1
                    self.statement_victims.append((conn.thread_id(), marker))
                self.errors.append(str(exc))
                conn = self._reconnect(conn)
        conn.close()

    def _reconnect(self, conn):
        try:
            conn.close()
        except Exception:
            pass
        return self._connect()


def _flip_table(fleet, server, count):
    with fx.admin(fleet, server) as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS appdb.flip (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
        for slot in range(count):
            cur.execute("INSERT IGNORE INTO appdb.flip VALUES (%s, 0)", (slot,))


def _bystanders(fleet, server, count):
    """`count` idle sessions of another user, never victims: a long thread list makes every
    re-read of it slower, so the time from a victim's re-read to its KILL longer."""
    srv = fleet.server(server)
    with fx.admin(fleet, server) as cur:
        cur.execute("SELECT @@max_connections")
        (before,) = cur.fetchone()
        cur.execute("SET GLOBAL max_connections = %s", (max(before, count + 200),))
    held, lock = [], threading.Lock()

    def open_some(n):
        mine = [
            pymysql.connect(
                host=srv["host"], port=srv["port"], user="app2", password=fleet.password("app2"), ssl_disabled=True
            )
            for dummy in range(n)
        ]
        with lock:
            held.extend(mine)

    workers = [threading.Thread(target=open_some, args=(count // 4 + (i < count % 4),)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return held, before


# A sweep (listing and guarded end) among 600 more threads on an idle machine: about 0.25 s.
PACE_SECONDS = 0.25


def run_flipping_race(fleet, server, tag, flippers=24, kills_wanted=400, seconds=180, bystanders=0, paced=False):
    """End the idle ones among flipping sessions until `kills_wanted` kills or `seconds`
    (with `bystanders` idle sessions of another user on the server meanwhile). Unloaded, the
    kills come first (300-400 in 15-40 s); `seconds` only bounds a busy machine's run, where
    they come 3-4 times slower (95 in 60 s beside 2 CPU hogs and `make test`), so that the
    figures still count enough kills to be statistics. `paced`: the flippers' long idle
    stretches (the ones a sweep can catch) grow with the last sweep's duration over
    PACE_SECONDS (an idle machine's sweep), so that a sweep slowed by a busy machine still
    catches flippers in them; on an idle machine nothing changes.

    Returns the figures: kills (the driver's `terminated`), wrong kills seen by the
    flippers (in a statement, in a transaction), idle kills seen by the flippers.
    """
    _flip_table(fleet, server, flippers)
    with fx.admin(fleet, server) as cur:
        # the server's own record of which statements it received (thread id, text)
        cur.execute("TRUNCATE mysql.general_log")
        cur.execute("SET GLOBAL log_output = 'TABLE', general_log = 1")
    crowd_of_others, max_connections = _bystanders(fleet, server, bystanders) if bystanders else ([], None)
    stop = threading.Event()
    pace = [1.0]
    crowd = [Flipper(fleet, server, tag, slot, stop, pace) for slot in range(flippers)]
    for flipper in crowd:
        flipper.thread.start()
    kills = not_ended = sweeps = 0
    deadline = time.monotonic() + seconds
    try:
        with fx.driver(fleet, server) as d:
            while kills < kills_wanted and time.monotonic() < deadline:
                sweep_start = time.monotonic()
                idle = [s for s in fx.mine(d.list_sessions(), tag) if s["state"] == "idle"]
                if idle:
                    outcomes = [outcome for dummy, outcome, dummy2 in d.end_sessions(idle, "terminate")]
                    kills += outcomes.count("terminated")
                    not_ended += len(outcomes) - outcomes.count("terminated")
                sweeps += 1
                if paced:
                    pace[0] = max(1.0, (time.monotonic() - sweep_start) / PACE_SECONDS)
                # InnoDB refreshes INFORMATION_SCHEMA.INNODB_TRX at most every 100 ms of
                # quiet: a listing sooner after the last one may miss a fresh transaction.
                time.sleep(0.15)
    finally:
        stop.set()
        for flipper in crowd:
            flipper.thread.join(10)
        with fx.admin(fleet, server) as cur:
            cur.execute("SET GLOBAL general_log = 0")
            received = 0
            for flipper in crowd:
                for thread_id, marker in flipper.statement_victims:
                    cur.execute(
                        "SELECT COUNT(*) FROM mysql.general_log WHERE thread_id = %s AND argument LIKE %s",
                        (thread_id, "%%/* %s */%%" % marker),
                    )
                    received += cur.fetchone()[0] > 0
            cur.execute("TRUNCATE mysql.general_log")
            for conn in crowd_of_others:
                conn.close()
            if max_connections is not None:
                # The server ends a closed connection's thread a moment later: put the limit back
                # only once the crowd is gone, or the next test meets "Too many connections".
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app2'")
                    if cur.fetchone()[0] < max_connections // 2:
                        break
                    time.sleep(0.2)
                cur.execute("SET GLOBAL max_connections = %s", (max_connections,))
    return {
        "kills": kills,
        "not_ended": not_ended,
        "sweeps": sweeps,
        # the server had received the statement: it was killed in it
        "wrong_in_statement": received,
        # the flipper's statement failed, but the server never received it: the kill
        # came first, while the server saw the session idle (the statement was on the wire)
        "lost_on_the_wire": sum(f.statement_kills for f in crowd) - received,
        "wrong_in_transaction": sum(f.transaction_kills for f in crowd),
        "idle_kills_seen": sum(f.idle_kills for f in crowd),
        "flips": sum(f.cycles for f in crowd),
    }


def test_the_flipping_race_kills_no_session_in_a_statement_or_a_transaction(fleet, my_tag):
    figures = run_flipping_race(fleet, fx.SERVER, my_tag)
    print("flipping race (MariaDB, server-side guard): %r" % figures)
    wrong = figures["wrong_in_statement"] + figures["wrong_in_transaction"]
    assert figures["kills"] >= 300, figures
    # What remains: the microseconds inside the server between the re-read and the KILL
    # of one victim, and a session that sent BEGIN but touched no InnoDB table yet (no
    # server table shows that transaction). Measured 0-1 in about 400 (the former
    # re-read-then-KILL-each: 49-67 in about 410); the bound leaves room for a loaded machine.
    assert wrong * 100 <= figures["kills"], figures


def test_the_flipping_race_among_a_long_thread_list(fleet, my_tag):
    # 600 more threads: every re-read of information_schema.PROCESSLIST fills ~650 rows
    # (about 0.5 ms instead of 0.1) and a victim's KILL comes after the whole read, so the
    # window from re-read to KILL grows with the thread list. Measured (2026-12-01, 2 cores,
    # ~300 kills a run, a re-read per victim): 1-6 wrong kills a run (the unrolled block
    # before the loop: 4-5). The bound leaves room for a loaded machine and still fails a
    # guard whose window is several times wider.
    # On a busy machine (2 CPU hogs and other work beside, load average 15-25 on 2 cores) a
    # sweep took longer than the flippers' idle stretches, so most woke first (91 kills in 180 s,
    # 40 with 8 victims a statement): paced, their long stretches follow the sweeps' duration.
    # Its wrong kills then: 9 in 295, 6 in 91, 16 in 214 unpaced, 7 in 304, 11 and 13 in 302
    # paced (2.3-7.5 %), half in transactions (the INNODB_TRX cache that a busy machine's
    # listings starve: issue 19 item 6), the rest in a window a starved server thread widens.
    # Busy, the bound is 10 in 100: still under what the re-read-then-KILL-each guard made on
    # an idle machine (12-16 %).
    figures = run_flipping_race(fleet, fx.SERVER, my_tag, kills_wanted=300, bystanders=600, paced=True)
    busy, load = busy_machine()
    print("flipping race among 600 more threads (MariaDB, server-side guard; load %.1f): %r" % (load, figures))
    wrong = figures["wrong_in_statement"] + figures["wrong_in_transaction"]
    assert figures["kills"] >= 200, figures
    assert wrong * 100 <= (10 if busy else 5) * figures["kills"], (load, figures)


# ------------------------------------------------------------ MySQL's path: re-read before each KILL
def test_the_mysql_path_rereads_each_victim_right_before_its_kill(fleet, my_held, my_tag):
    """MySQL has no anonymous compound statement: the driver re-reads a victim and KILLs it
    at once, one victim after the other. Run that path on MariaDB (the MySQL 8.0.21 SQL,
    information_schema.PROCESSLIST and TIME, is valid there too)."""
    held = [my_held("idle", application=my_tag) for dummy in range(3)]
    woken = my_held("idle", application=my_tag)
    time.sleep(3.1)  # idle for 3 s when planned: a new statement moves its state_since past the tolerance
    with fx.driver(fleet) as d:
        d.flavour = my_flavours.detect("8.0.21", "MySQL Community Server - GPL", 0)
        d.superusers_readable = False  # MariaDB has no mysql.global_grants
        planned = sorted(fx.mine(d.list_sessions(), my_tag), key=lambda s: s["id"])
        woken.execute("SELECT 1")
        sent = []
        inner = d._execute

        def recording(query):
            sent.append(query)
            return inner(query)

        d._execute = recording
        results = d.end_sessions(planned, "terminate")
    by_id = dict((s["id"], outcome) for s, outcome, dummy in results)
    assert [by_id[h.id] for h in held] == ["terminated"] * 3
    assert by_id[woken.id] == "state_changed"
    kinds = [("kill", q[1][0]) if q[0].startswith("KILL") else ("read", q[1][-1]) for q in sent]
    expected = []
    for session in planned:
        expected.append(("read", session["id"]))
        if session["id"] != woken.id:
            expected.append(("kill", session["id"]))
    assert kinds == expected
    assert wait_until(lambda: not any(h.alive() for h in held))
    assert woken.alive()


# ------------------------------------------------------------ the guard block itself
def test_the_guard_block_reports_each_victim(fleet, my_held, my_tag):
    stays = my_held("idle", application=my_tag + "-stays")
    leaves = my_held("idle", application=my_tag + "-leaves")
    wakes = my_held("idle", application=my_tag + "-wakes")
    active = my_held("active", application=my_tag + "-active", seconds=30)
    with fx.driver(fleet) as d:
        planned = dict((s["application"], s) for s in fx.mine(d.list_sessions(), my_tag))
        leaves.close()
        assert wait_until(lambda: not leaves.alive())
        wakes.execute("SELECT 1")
        order = [my_tag + "-stays", my_tag + "-leaves", my_tag + "-wakes"]
        results = d.end_sessions([planned[name] for name in order], "terminate")
        assert [outcome for dummy, outcome, dummy2 in results] == ["terminated", "gone", "state_changed"]
        assert "new statement" in results[2][2]
        # a thread that vanished between the re-read and the KILL: KILL's 1094 is caught in the block
        # (a victim's own step, and the loop over idle victims)
        ghost = dict(planned[my_tag + "-leaves"])
        sql, params = d.flavour.guard_block([ghost], "terminate", loop=False)
        sql = sql.replace(
            "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); ELSEIF ok = 1 THEN", "ELSEIF n = 0 OR ok = 1 THEN"
        )
        assert "n = 0 OR ok = 1" in sql
        (row,) = d._execute((sql, params))
        assert my_guard.parse_guard_outcomes(row[0], 1) == [("k", ["1094"])]
        sql, params = d.flavour.guard_block([ghost], "terminate")
        sql = sql.replace(
            "ELSEIF n = 0 THEN SET r = CONCAT(r, 'g|'); ELSEIF c = 'Sleep' AND q = v.qid THEN",
            "ELSEIF n = 0 OR TRUE THEN",
        )
        assert "n = 0 OR TRUE" in sql
        (row,) = d._execute((sql, params))
        assert my_guard.parse_guard_outcomes(row[0], 1) == [("k", ["1094"])]
        assert d._outcome(ghost, "terminate", "k", ["1094"])[1] == "gone"
        # a cancel: KILL QUERY ID of the statement just re-read; the connection stays
        ((dummy, outcome, dummy2),) = d.end_sessions([planned[my_tag + "-active"]], "cancel")
        assert outcome == "cancelled"
    assert wait_until(lambda: active.state() == "Sleep") and active.alive()
    assert wait_until(lambda: not stays.alive())
    assert wakes.alive()


def test_cancel_of_a_statement_that_ended_is_not_ended(fleet, my_held, my_tag):
    active = my_held("active", application=my_tag, seconds=30)
    with fx.driver(fleet) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        with fx.admin(fleet) as cur:
            cur.execute("KILL QUERY %s", (active.id,))
        assert wait_until(lambda: active.state() == "Sleep")
        # A new statement, clearly later than the planned one (the guard's start tolerance is 50 ms).
        time.sleep(0.1)
        active.execute("SELECT 1")
        ((dummy, outcome, detail),) = d.end_sessions(planned, "cancel")
    assert outcome == "state_changed", detail
    assert active.alive()


def test_many_victims_go_in_batches_of_one_round_trip(fleet, my_held, my_tag, monkeypatch):
    held = [my_held("idle", application=my_tag) for dummy in range(7)]
    monkeypatch.setattr(my_guard, "GUARD_BATCH", 3)
    with fx.driver(fleet) as d:
        sent = []
        inner = d._execute
        d._execute = lambda query: sent.append(query[0][:16]) or inner(query)
        results = d.end_sessions(fx.mine(d.list_sessions(), my_tag), "terminate")
    assert [r[1] for r in results] == ["terminated"] * 7
    assert sent.count("BEGIN NOT ATOMIC") == 3
    assert wait_until(lambda: not any(h.alive() for h in held))


# ------------------------------------------------------------ listing: program_name apart, cached
def test_applications_are_read_apart_and_only_when_needed(fleet, my_held, my_tag):
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy

    held = my_held("idle", application=my_tag)
    with fx.driver(fleet) as d:
        sent = []
        inner = d._execute
        d._execute = lambda query: sent.append(query[0]) or inner(query)
        first = [s for s in d.list_sessions() if s["id"] == held.id]
        assert first[0]["application"] == my_tag
        assert any("session_connect_attrs" in q for q in sent)
        assert not any("session_connect_attrs" in q and "information_schema.PROCESSLIST" in q for q in sent)
        del sent[:]
        again = [s for s in d.list_sessions() if s["id"] == held.id]
        assert again[0]["application"] == my_tag
        # the attributes of a session already seen are not read again
        assert not any(
            "session_connect_attrs" in q and "PROCESSLIST_ID IN" in q and str(held.id) in str(q) for q in sent
        )
        # a policy that needs no applications: listings skip them, victims still get theirs
        d.preflight(signal=True, policy=parse_policy({"rules": [{"users": ["app"]}]}))
        d._applications.clear()
        del sent[:]
        listed = [s for s in d.list_sessions() if s["id"] == held.id]
        assert listed[0]["application"] is None
        assert not any("session_connect_attrs" in q for q in sent)
        d.end_sessions(listed, "terminate")
        assert listed[0]["application"] == my_tag
    assert wait_until(lambda: not held.alive())


# ------------------------------------------------------------ frozen servers
@contextlib.contextmanager
def frozen(fleet, server=VICTIM_SERVER):
    """The server's process stopped (SIGSTOP) for the block; always resumed."""
    pid = mariadb.running_pid(fleet.server(server))
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _bounded(call, bound):
    start = time.monotonic()
    with pytest.raises(SessionError) as caught:
        call()
    return time.monotonic() - start, str(caught.value), bound


def test_connect_to_a_frozen_server_fails_within_connect_timeout(fleet):
    with frozen(fleet):
        elapsed, message, dummy = _bounded(
            lambda: my_driver.open_driver(fx.conn_params(fleet, VICTIM_SERVER, connect_timeout=2)), 2
        )
    print("connect to a frozen server failed after %.1f s: %s" % (elapsed, message))
    assert elapsed < 2 * 2 + 1  # TCP connect (the kernel accepts) + the bounded handshake reads
    assert "connect_timeout" in message and fleet.server(VICTIM_SERVER)["host"] in message


def test_list_and_kill_on_a_frozen_server_fail_within_query_timeout(fleet, my_held, my_tag):
    held = my_held("idle", server=VICTIM_SERVER, application=my_tag)
    with fx.driver(fleet, VICTIM_SERVER, query_timeout=2) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        with frozen(fleet):
            elapsed, message, dummy = _bounded(d.list_sessions, 2)
        print("list on a frozen server failed after %.1f s: %s" % (elapsed, message))
        assert elapsed < 2 + 1.5 and "query_timeout" in message
    # Frozen from the start: the first read of end_sessions (whether the server keeps
    # statement events) times out, and no KILL went out.
    with fx.driver(fleet, VICTIM_SERVER, query_timeout=2) as d:
        with frozen(fleet):
            elapsed, message, dummy = _bounded(lambda: d.end_sessions(planned, "terminate"), 2)
        print("kill on a server frozen before it failed after %.1f s: %s" % (elapsed, message))
        assert elapsed < 2 + 1.5 and "query_timeout" in message and "before any KILL" in message
    # Frozen right after the binding, when the guard block goes out.
    with fx.driver(fleet, VICTIM_SERVER, query_timeout=2) as d, contextlib.ExitStack() as stack:
        bind = d._bind_statement_events

        def bind_then_freeze(victims, mode):
            bound = bind(victims, mode)
            stack.enter_context(frozen(fleet))
            return bound

        d._bind_statement_events = bind_then_freeze
        start = time.monotonic()
        with pytest.raises(SessionError) as caught:
            d.end_sessions(planned, "terminate")
        elapsed = time.monotonic() - start
        stack.close()
        print("kill on a server frozen at its guard block failed after %.1f s: %s" % (elapsed, caught.value))
        assert elapsed < 2 + 1.5 and "query_timeout" in str(caught.value)
        # the block was on the wire: the server, once resumed, may still run it
        assert "is not known" in str(caught.value)
        assert caught.value.outcomes == []
    assert held.id


def test_a_long_statement_is_stopped_by_the_server(fleet):
    with fx.driver(fleet, query_timeout=1) as d:
        with pytest.raises(SessionError, match="query_timeout"):
            d._fetch_all(("SELECT SLEEP(3)", ()))


# ------------------------------------------------------------ restart: identity
def test_a_planned_session_of_a_restarted_server_is_gone(fleet, my_held, my_tag):
    srv = fleet.server(VICTIM_SERVER)
    before = my_held("idle", server=VICTIM_SERVER, application=my_tag)
    with fx.driver(fleet, VICTIM_SERVER) as d:
        planned = fx.mine(d.list_sessions(), my_tag)
        started = d.server_started
    assert planned[0]["key"].endswith("/%d" % started)
    mariadb.stop(srv)
    mariadb.start(srv, fleet.pki)
    time.sleep(1.1)  # a start time of another second
    # a new session, with the thread id of the planned one if the server hands it out again
    after = [my_held("idle", server=VICTIM_SERVER, application=my_tag) for dummy in range(3)]
    with fx.driver(fleet, VICTIM_SERVER) as d:
        assert d.server_started != started
        now = fx.mine(d.list_sessions(), my_tag)
        assert not set(s["key"] for s in now) & set(s["key"] for s in planned)
        same_id = [s for s in now if s["id"] == planned[0]["id"]]
        victim = dict(planned[0], host=same_id[0]["host"]) if same_id else planned[0]
        ((dummy, outcome, detail),) = d.end_sessions([victim], "terminate")
    assert outcome == "gone" and "restarted" in detail
    assert all(s.alive() for s in after)
    assert before.conn is not None


# ------------------------------------------------------------ sweep lock
def test_one_sweep_lock_per_server(fleet):
    with fx.driver(fleet) as first, fx.driver(fleet) as second:
        assert first.acquire_sweep_lock(0) is True
        assert first.acquire_sweep_lock(0) is True  # held already
        start = time.monotonic()
        assert second.acquire_sweep_lock(1) is False
        assert time.monotonic() - start >= 0.9
        first.release_sweep_lock()
        assert second.acquire_sweep_lock(1) is True
        second.close()  # closing releases it
        assert first.acquire_sweep_lock(2) is True
    for bad in (-1, float("nan"), float("inf"), "5", 99999):
        with fx.driver(fleet) as d:
            with pytest.raises(SessionError, match="sweep lock timeout"):
                d.acquire_sweep_lock(bad)


def test_waiting_for_the_lock_longer_than_query_timeout(fleet):
    with fx.driver(fleet) as first, fx.driver(fleet, query_timeout=1) as second:
        assert first.acquire_sweep_lock(0)
        timer = threading.Timer(2.0, first.release_sweep_lock)
        timer.start()
        try:
            assert second.acquire_sweep_lock(5) is True
        finally:
            timer.cancel()


# ------------------------------------------------------------ passwords
@pytest.mark.parametrize("password", ["pass\u20acword", "p\u00e4ssw\u00f6rd", "\u65e5\u672c\u8a9e-\U0001f511"])
def test_utf8_passwords(fleet, my_user, password):
    user, dummy = my_user(grants=fx.LEAST_PRIVILEGE_GRANTS)
    with fx.admin(fleet) as cur:
        for host in ("%", "localhost"):
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
    with fx.driver(fleet, user=user, password=password) as d:
        d.preflight(signal=True)
        assert d.current_user.startswith(user + "@")
    wrong = password[:-1] + "x"
    with pytest.raises(SessionError) as caught:
        fx.driver(fleet, user=user, password=wrong).__enter__()
    message = str(caught.value)
    assert "Access denied" in message
    for char in set(password + wrong) - set("passwordx-"):
        assert char not in message


# ------------------------------------------------------------ hostile options
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"login_host": "127.0.2.21\x00evil"}, "login_host"),
        ({"login_user": "hygiene\x00"}, "login_user"),
        ({"login_password": "pw\x00secret"}, "login_password"),
        ({"login_unix_socket": "/tmp/x\udcffy"}, "login_unix_socket"),
        ({"login_port": "not a port"}, "login_port"),
        ({"login_port": True}, "login_port"),
        ({"connect_timeout": 10**12}, "connect_timeout"),
        ({"query_timeout": 0}, "query_timeout"),
    ],
)
def test_hostile_options_fail_before_connecting(fleet, overrides, field):
    with pytest.raises(SessionError) as caught:
        my_driver.open_driver(fx.conn_params(fleet, **overrides))
    message = str(caught.value)
    assert message.startswith(field + ":")
    assert "secret" not in message
