# -*- coding: utf-8 -*-
"""The wake race of the MariaDB guard: idle sessions that wake while they are ended.

Idle victims to terminate go through the guard block's loop: each re-read on its own in
information_schema.PROCESSLIST and KILLed at once if it is still Sleep with its planned
QUERY_ID; with the events_statements_current consumer on (the second run), bound to their
latest statement event after the listing and re-read in events_statements_current.
Each round opens SESSIONS sessions (`_wakers.py`, a process of its own), lets them
idle a short time (IDLE_SECONDS, above the driver's idle proof), then wakes WAKE_SHARE of them
at random moments spread over the time the sweep's listing and guarded end took in the round
before (a `SELECT 1`, or BEGIN; UPDATE; a few ms idle; COMMIT), while the driver lists them
and ends the idle ones. FROZEN_SHARE of the sessions set their own clock first (SET timestamp
an hour back, as mysqlbinlog output does): QUERY_ID, the guard's proof, does not follow it.
Rounds go on until KILLS kills (or SECONDS).

A wrong kill, from the server's general log (TABLE output, microsecond times): a session
ended after the server had received a statement from it later than the sweep's listing
statement (it moved since planning), or ended inside a transaction (its last statement
opened or wrote in one, no COMMIT after). The guard leaves only the time between a
victim's re-read and its KILL inside the server: at most ALLOWED_WRONG_RATE of the kills.
A guard that trusts one read for several victims, or one that does not compare QUERY_ID,
makes wrong kills of many of the wakes that land between the listing and the guard: it
fails here.

Measured (2026-12-01, 2 cores, rounds of 100, about 2,000 kills a run), on the guards this
race was written against: a re-read per victim 6 wrong kills in 8,191 (0.07 %); victims read
in groups of 8 with the read trusted for up to 1 ms 83 in 12,184 (0.68 %), for 200 us 8 in
4,044 (0.20 %); one read per block of victims 39 in 502; QUERY_ID not compared 186 in 571.

The crisis race (the third run): each round also holds GHOSTS sessions idle GHOST_IDLE seconds
(a leaking pool's ghosts, of another application; they never wake) beside FLIPPERS sessions
raced as above, and sweeps them together. The driver's bound of (verifying read -> KILL) /
idle time is raised to CRISIS_BOUND so that ghosts idle seconds get the window the documented
bound (_mysql/verified.WINDOW_RATIO_BOUND) gives ghosts idle many minutes: the ghosts go through
verified blocks (one read of the thread list per block, then a tight loop of KILLs), the
flippers, idle 0.3-0.5 s, must each be re-read on their own; the wrong kills among the
flippers' kills stay within the same bound, and every ghost is ended.

Knobs: RELIABILITY_WAKE_RACE_KILLS (1000), RELIABILITY_WAKE_RACE_SECONDS (240),
RELIABILITY_WAKE_RACE_SESSIONS (100), RELIABILITY_WAKE_RACE_WAKE_SHARE (0.5),
RELIABILITY_WAKE_RACE_IDLE (0.3-0.5: seconds idle before the sweep, drawn per round),
RELIABILITY_WAKE_RACE_WINDOW (unset: the wakes are spread over the previous round's sweep;
else over this many seconds),
RELIABILITY_WAKE_RACE_FROZEN_SHARE (0.1), RELIABILITY_WAKE_RACE_SEED,
RELIABILITY_ALLOWED_WRONG_KILLS (a fixed bound); the crisis race: RELIABILITY_CRISIS_GHOSTS (2000),
RELIABILITY_CRISIS_GHOST_IDLE (20 s), RELIABILITY_CRISIS_FLIPPERS (300), RELIABILITY_CRISIS_BOUND
(0.01), RELIABILITY_CRISIS_SECONDS (600).
Needs one MariaDB server of the fleet (mariadb1) and nothing else.
"""

import json
import os
import random
import subprocess
import sys
import time

import pytest
from _common import HERE, ROOT, admin_execute, driver_module, driver_params, figure, new_tag
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import verified as my_verified
from bench_mysql import hold_idle
from dbfleet import mariadb, platforms
from dbfleet import testing as fleet_testing

SERVER = "mariadb1"
TARGET_KILLS = int(os.environ.get("RELIABILITY_WAKE_RACE_KILLS", "1000"))
RACE_SECONDS = float(os.environ.get("RELIABILITY_WAKE_RACE_SECONDS", "240"))
SESSIONS = int(os.environ.get("RELIABILITY_WAKE_RACE_SESSIONS", "100"))
WAKE_SHARE = float(os.environ.get("RELIABILITY_WAKE_RACE_WAKE_SHARE", "0.5"))
FROZEN_SHARE = float(os.environ.get("RELIABILITY_WAKE_RACE_FROZEN_SHARE", "0.1"))
IDLE_SECONDS = tuple(float(x) for x in os.environ.get("RELIABILITY_WAKE_RACE_IDLE", "0.3-0.5").split("-"))
# The wakes are spread over this many seconds from the sweep's start (unset: over the time the
# listing and the guarded end took in the round before, so that guards of any speed are raced).
FIXED_WINDOW = os.environ.get("RELIABILITY_WAKE_RACE_WINDOW")
# A read per victim: measured 0.07 % (6 in 8,191, the helper's runs) and 0.13 % (5 in 3,713 over
# five runs of the loop, 2026-12-01). At 1,000 kills the bound is 5, so a run of that guard fails
# about once in 300; one read per block of victims (7.8 %) or no QUERY_ID comparison (33 %) always.
ALLOWED_WRONG_RATE = 0.005
# The first round's guess of how long the listing and the guarded end take (then: as measured).
FIRST_WINDOW = 0.05
# The documented bound of (verifying read -> KILL) / idle time of the MariaDB guard.
WINDOW_RATIO_BOUND = my_verified.WINDOW_RATIO_BOUND
GHOSTS = int(os.environ.get("RELIABILITY_CRISIS_GHOSTS", "2000"))
GHOST_IDLE = float(os.environ.get("RELIABILITY_CRISIS_GHOST_IDLE", "20"))
FLIPPERS = int(os.environ.get("RELIABILITY_CRISIS_FLIPPERS", "300"))
CRISIS_BOUND = float(os.environ.get("RELIABILITY_CRISIS_BOUND", "0.01"))
CRISIS_SECONDS = float(os.environ.get("RELIABILITY_CRISIS_SECONDS", "600"))


def allowed_wrong(kills):
    fixed = os.environ.get("RELIABILITY_ALLOWED_WRONG_KILLS")
    if fixed is not None:
        return int(fixed)
    return int(ALLOWED_WRONG_RATE * kills)


@pytest.fixture(scope="module")
def fleet():
    """The fleet of $DBFLEET_STATE_DIR; this test needs only its first MariaDB server."""
    fleet = fleet_testing.ensure(os.environ.get("DBFLEET_POSTGRES", "2"), os.environ.get("DBFLEET_MARIADB", "2"))
    if SERVER not in [server["name"] for server in fleet.servers]:
        pytest.fail("the wake race needs the MariaDB server %s in the fleet" % SERVER)
    return fleet


class Round(object):
    """One round's sessions: the waker process, its thread ids, its wake-up records."""

    def __init__(self, fleet, prefix, table, number, rng, sessions=SESSIONS):
        self.prefix = "%s-r%d" % (prefix, number)
        self.plan = [
            [slot, "select" if rng.random() < 0.5 else "transaction", rng.random() < FROZEN_SHARE]
            for slot in range(sessions)
        ]
        argv = [
            sys.executable,
            os.path.join(HERE, "_wakers.py"),
            "--server",
            SERVER,
            "--prefix",
            self.prefix,
            "--table",
            table,
            "--plan",
            json.dumps(self.plan),
        ]
        env = dict(os.environ, DBFLEET_STATE_DIR=fleet.state_dir, PYTHONPATH=os.path.join(ROOT, "tools"))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, cwd=ROOT, bufsize=1
        )
        line = self.proc.stdout.readline()
        assert line, "the waker process did not start"
        hello = json.loads(line)
        self.ids = dict((int(slot), thread_id) for slot, thread_id in hello["ids"].items())
        self.ready = hello["ready"]
        self.frozen = set(self.ids[slot] for slot, dummy, frozen in self.plan if frozen)

    def go(self, at, offsets):
        self.proc.stdin.write(json.dumps({"go": at, "offsets": offsets}) + "\n")
        self.proc.stdin.flush()

    def finish(self):
        """The wake-up records, once the sweep is over; then the sessions that are left close."""
        line = self.proc.stdout.readline()
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return json.loads(line)["records"] if line else []


def general_log(server, thread_ids):
    """{thread id: [(epoch seconds, command_type, argument)]} of these threads, in order."""
    rows = admin_execute(
        server,
        "SELECT UNIX_TIMESTAMP(event_time), thread_id, command_type, CONVERT(argument USING utf8mb4) "
        "FROM mysql.general_log WHERE thread_id IN (%s) ORDER BY event_time" % ", ".join(["%s"] * len(thread_ids)),
        tuple(thread_ids),
    )
    found = {}
    for when, thread_id, command, argument in rows:
        found.setdefault(int(thread_id), []).append((float(when), command, argument or ""))
    return found


def sweep_times(entries):
    """(listing, guard): when the server received the sweep's listing and its first guard block."""
    guard = next((when for when, dummy, text in entries if text.lstrip().upper().startswith("BEGIN NOT ATOMIC")), None)
    # The listing joins InnoDB's transaction list; the binding's thread-list read does not.
    listings = [
        when
        for when, dummy, text in entries
        if "INFORMATION_SCHEMA.PROCESSLIST" in text.upper()
        and "INNODB_TRX" in text.upper()
        and not text.lstrip().upper().startswith("BEGIN NOT ATOMIC")
        and (guard is None or when <= guard)
    ]
    return (listings[-1] if listings else None), guard


def classify(entries, listing):
    """Where a killed thread was, from its statements in the log: `transaction` (its last
    statements opened one, no COMMIT after), `statement` (it sent one after the listing: it
    moved since planning), or `idle`."""
    statements = [(when, text) for when, command, text in entries if command not in ("Connect", "Quit")]
    open_transaction = False
    for _dummy, text in statements:
        word = text.strip().upper()
        if word.startswith("BEGIN") or word.startswith("START TRANSACTION"):
            open_transaction = True
        elif word.startswith("COMMIT") or word.startswith("ROLLBACK"):
            open_transaction = False
    if open_transaction:
        return "transaction"
    if any(when > listing for when, dummy in statements):
        return "statement"
    return "idle"


def describe_kill(session, where, log, listing, guard, records, current):
    """One wrong kill, for the output: the plan, the wake-up, the thread's statements (ms from the listing)."""
    record = next((r for r in records if r["id"] == session["id"]), {})
    statements = [
        "%+.1f %s %s" % (1000 * (when - listing), command, text[:40])
        for when, command, text in log.get(session["id"], [])
        if when >= listing - 1
    ]
    if not record:
        client = ""
    elif record.get("died"):
        client = "; the client saw its %s fail: %s" % (record["died"], record.get("error", ""))
    else:
        client = "; the client's %s returned" % record.get("kind")
    return "thread %d (%s, %s%s): planned %s idle %.3f s query_id %s; guard block at %+.1f ms; %s%s" % (
        session["id"],
        where,
        record.get("kind", "not woken"),
        ", frozen clock" if session["id"] in current.frozen else "",
        session["state"],
        session["idle_seconds"] or 0,
        session.get("query_id"),
        1000 * (guard - listing),
        "; ".join(statements) or "no statement near the sweep",
        client,
    )


def first_wake(entries, listing):
    """When the server received a woken session's first statement of the sweep (the wakers'
    `SELECT 1 /* wake-race N */` or BEGIN; the statements of its login and its SET
    timestamp came before it went idle), or None."""
    return next(
        (
            when
            for when, command, text in entries
            if command == "Query"
            and when >= listing - 1
            and (text.lstrip().upper().startswith("BEGIN") or "wake-race" in text)
        ),
        None,
    )


@pytest.mark.parametrize("read_on", ["processlist", "statement_events", "crisis", "rds_kill"])
def test_wake_race(fleet, tmp_path, read_on):
    """read_on processlist: the fleet as it runs (the events_statements_current consumer off, as
    MariaDB ships it), each victim re-read in PROCESSLIST; statement_events: that consumer on,
    so the driver binds the victims to their statement events and the guard reads those;
    crisis: as processlist, with GHOSTS long-idle ghosts beside FLIPPERS raced sessions;
    rds_kill: as processlist, the server dressed as RDS (tools/dbfleet/platforms.py) and the
    sweep run as its master user, so the guard ends each victim with CALL mysql.rds_kill."""
    crisis = read_on == "crisis"
    sessions = FLIPPERS if crisis else SESSIONS
    server = fleet.server(SERVER)
    login = {}
    if read_on == "rds_kill":
        logins = platforms.emulate(fleet, SERVER, "rds")
        login = dict(login_user=logins["admin"], login_password=logins["password"], platform="rds")
    consumer_was_on = mariadb.set_statement_events(server, read_on == "statement_events")
    (connections_were,) = admin_execute(server, "SELECT @@max_connections")[0]
    if crisis:
        admin_execute(server, "SET GLOBAL max_connections = %d" % (GHOSTS + sessions + 100))
    prefix = new_tag("wakerace")
    table = "wr_" + prefix.split("-")[-1]
    admin_execute(server, "CREATE TABLE appdb.%s (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB" % table)
    admin_execute(server, "INSERT INTO appdb.%s (id, n) SELECT seq, 0 FROM appdb.seq_0_to_%d" % (table, sessions - 1))
    admin_execute(server, "SET GLOBAL general_log = 0")
    admin_execute(server, "SET GLOBAL log_output = 'TABLE'")
    admin_execute(server, "TRUNCATE TABLE mysql.general_log")
    admin_execute(server, "SET GLOBAL general_log = 1")
    rng = random.Random(os.environ.get("RELIABILITY_WAKE_RACE_SEED"))
    counted = ("kills", "state_changed", "gone", "other", "idle", "statement", "transaction", "wakes")
    totals = {key: 0 for key in counted}
    wakes_at = {"before_listing": 0, "listing_to_guard": 0, "after_guard": 0}
    steps = {"statement_events": 0, "looped": 0, "own_step": 0, "block_verified": 0}
    ghosts = {"held": 0, "terminated": 0, "other": 0}
    ghosts_not_ended = {}  # (outcome, detail) -> how many
    ratios, flippers_in_blocks = [], 0
    wrong_frozen = 0
    wrong_kills = []
    windows, ages, rounds, empty_rounds = [], [], 0, 0
    window = float(FIXED_WINDOW) if FIXED_WINDOW else FIRST_WINDOW
    started = time.monotonic()
    driver = driver_module("mysql").open_driver(driver_params(fleet, SERVER, **login))
    if crisis:
        driver.window_ratio_bound = CRISIS_BOUND
    held = []
    seconds = CRISIS_SECONDS if crisis else RACE_SECONDS
    try:
        while totals["kills"] < TARGET_KILLS and time.monotonic() - started < seconds:
            admin_execute(server, "TRUNCATE TABLE mysql.general_log")
            if crisis:
                held = hold_idle(fleet, SERVER, GHOSTS, application=prefix + "-ghost")
                ghosts["held"] += len(held)
                time.sleep(GHOST_IDLE)
            current = Round(fleet, prefix, table, rounds, rng, sessions)
            rounds += 1
            age = rng.uniform(IDLE_SECONDS[0], IDLE_SECONDS[-1])
            ages.append(age)
            time.sleep(max(0.0, current.ready + age - time.monotonic()))
            go = time.monotonic() + 0.02
            offsets = dict(
                (str(slot), rng.uniform(0.0, window) if rng.random() < WAKE_SHARE else None) for slot in current.ids
            )
            current.go(go, offsets)
            time.sleep(max(0.0, go - time.monotonic()))
            before = dict(driver.guard_counts)
            sweep_started = time.monotonic()
            victims = [
                s
                for s in driver.list_sessions()
                if (s.get("application") or "").startswith((current.prefix + "-", prefix + "-ghost"))
                and s["state"] == "idle"
            ]
            results = driver.end_sessions(victims, "terminate") if victims else []
            assert driver.flavour.rds_kill == (read_on == "rds_kill")
            windows.append(time.monotonic() - sweep_started)
            if driver.window_ratio_max is not None:
                ratios.append(driver.window_ratio_max)
            # Flippers (idle 0.3-0.5 s) a verified block settled: none may be.
            flippers_in_blocks += sum(
                1
                for s in victims
                if (s.get("application") or "").startswith(current.prefix + "-")
                and s.get("key") in driver.block_verified_keys
            )
            window = float(FIXED_WINDOW) if FIXED_WINDOW else windows[-1]
            for key in steps:
                steps[key] += driver.guard_counts[key] - before[key]
            records = current.finish()
            log = general_log(server, [driver.own_id] + list(current.ids.values()))
            listing, guard = sweep_times(log.get(driver.own_id, []))
            assert listing is not None and (guard is not None or not victims), (
                "the sweep's statements are not in the general log: %r"
                % [(when, text[:60]) for when, dummy, text in log.get(driver.own_id, [])]
            )
            if guard is None:
                empty_rounds += 1
                continue
            for record in records:
                totals["wakes"] += 1
                first = first_wake(log.get(record["id"], []), listing)
                if first is None:
                    continue
                if first < listing:
                    wakes_at["before_listing"] += 1
                elif first < guard:
                    wakes_at["listing_to_guard"] += 1
                else:
                    wakes_at["after_guard"] += 1
            for session, outcome, _dummy in results:
                if (session.get("application") or "").startswith(prefix + "-ghost"):
                    ghosts["terminated" if outcome == "terminated" else "other"] += 1
                    if outcome != "terminated":
                        # The thread id varies: the detail without it.
                        what = (outcome, " ".join(w for w in (_dummy or "").split() if not w.isdigit()))
                        ghosts_not_ended[what] = ghosts_not_ended.get(what, 0) + 1
                    continue
                if outcome == "terminated":
                    totals["kills"] += 1
                    where = classify(log.get(session["id"], []), listing)
                    totals[where] += 1
                    if where != "idle":
                        wrong_frozen += session["id"] in current.frozen
                        wrong_kills.append(describe_kill(session, where, log, listing, guard, records, current))
                elif outcome in ("state_changed", "gone"):
                    totals[outcome] += 1
                else:
                    totals["other"] += 1
            for conn in held:
                conn.close()
            held = []
    finally:
        for conn in held:
            conn.close()
        driver.close()
        mariadb.set_statement_events(server, consumer_was_on)
        admin_execute(server, "SET GLOBAL max_connections = %d" % connections_were)
        admin_execute(server, "SET GLOBAL general_log = 0")
        admin_execute(server, "TRUNCATE TABLE mysql.general_log")
        admin_execute(server, "DROP TABLE IF EXISTS appdb.%s" % table)
        if login:
            platforms.remove(fleet, SERVER, "rds")
    elapsed = time.monotonic() - started
    wrong = totals["statement"] + totals["transaction"]
    windows.sort()
    figure(
        "wake race (MariaDB, guard reads on %s, %d rounds of %d sessions idle %.2f-%.2f s, %d%% woken over the sweep's "
        "%.0f ms (median listing + guarded end; wakes spread over %s), %d%% with a frozen clock): "
        "%d wrong kills / %d kills (%d outside a transaction but after a statement the server received after "
        "the listing, %d inside a transaction; %d of a frozen clock); guard victims %d on their statement "
        "events, %d in the PROCESSLIST loop, %d in steps of their own; "
        "%d state_changed, %d gone; wakes %d before the listing, %d between the listing and the guard block, "
        "%d after it; %d rounds without a victim; %.0f s%s"
        % (
            read_on,
            rounds,
            sessions,
            min(ages),
            max(ages),
            round(WAKE_SHARE * 100),
            1000 * windows[len(windows) // 2],
            "%.0f ms" % (1000 * float(FIXED_WINDOW)) if FIXED_WINDOW else "the round before's",
            round(FROZEN_SHARE * 100),
            wrong,
            totals["kills"],
            totals["statement"],
            totals["transaction"],
            wrong_frozen,
            steps["statement_events"],
            steps["looped"],
            steps["own_step"],
            totals["state_changed"],
            totals["gone"],
            wakes_at["before_listing"],
            wakes_at["listing_to_guard"],
            wakes_at["after_guard"],
            empty_rounds,
            elapsed,
            (
                "; beside %d ghosts idle %.0f s (%d ended, %d not), %d victims verified in blocks (%d flippers among "
                "them), the driver's bound %g (ghosts idle %.0f s at the documented bound %g), the largest "
                "window/idle ratio %s"
                % (
                    ghosts["held"],
                    GHOST_IDLE,
                    ghosts["terminated"],
                    ghosts["other"],
                    steps["block_verified"],
                    flippers_in_blocks,
                    CRISIS_BOUND,
                    GHOST_IDLE * CRISIS_BOUND / WINDOW_RATIO_BOUND,
                    WINDOW_RATIO_BOUND,
                    "%.2e" % max(ratios) if ratios else "-",
                )
                if crisis
                else ""
            ),
        )
    )
    for line in wrong_kills:
        print("wrong kill: %s" % line)
    for (outcome, detail), count in sorted(ghosts_not_ended.items()):
        print("ghosts not ended: %d %s: %s" % (count, outcome, detail))
    assert totals["other"] == 0, totals
    # No session leaves during a sweep (they close after it): a `gone` is a live session the guard missed.
    assert totals["gone"] == 0, totals
    assert totals["kills"] >= min(TARGET_KILLS, 100), "only %d kills in %.0f s" % (totals["kills"], elapsed)
    if crisis:
        # Every ghost ended, through verified blocks, each KILL within the bound; no flipper
        # (idle 0.3-0.5 s) in a block: each was re-read on its own.
        assert ghosts["terminated"] + ghosts["other"] == ghosts["held"], ghosts
        # A ghost is never left for a wrong reason: none woke, so none moved or left; the only
        # excuse is a read the server failed (reported failed, never killed: a transient server
        # error, such as one on the temporary table information_schema.PROCESSLIST fills).
        assert all(outcome == "failed" and "cannot re-read" in detail for outcome, detail in ghosts_not_ended), (
            ghosts_not_ended
        )
        assert ghosts["other"] <= 0.01 * ghosts["held"], ghosts
        assert steps["block_verified"] > 0 and ratios and max(ratios) <= CRISIS_BOUND, (steps, ratios)
        # A block is sized from the read cost the last block measured: a load spike can let a
        # flipper in (CI saw 1 in 1,113 kills on a loaded machine); its KILL is still held to the
        # bound server-side (max(ratios) above), so it stays rare, not a proof gap.
        assert flippers_in_blocks <= max(2, 0.01 * totals["kills"]), flippers_in_blocks
    else:
        # Sessions idle 0.3-0.5 s are far too recently active for a verified block at the
        # documented bound (_mysql/verified.WINDOW_RATIO_BOUND): each is re-read on its own.
        assert steps["block_verified"] == 0, steps
    taken = "statement_events" if read_on == "statement_events" else "looped"
    assert steps[taken] > 0, "the guard never took a victim through its %s loop: %r" % (read_on, steps)
    assert wakes_at["listing_to_guard"] >= 0.1 * totals["wakes"], (
        "too few wakes landed between the listing and the guard to race it: %r" % wakes_at
    )
    bound = allowed_wrong(totals["kills"])
    assert wrong <= bound, "%d wrong kills in %d (at most %d): %r" % (wrong, totals["kills"], bound, totals)
