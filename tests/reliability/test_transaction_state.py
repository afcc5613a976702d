# -*- coding: utf-8 -*-
"""Open transactions beside a monitoring agent that starves InnoDB's transaction cache.

A client reads INFORMATION_SCHEMA.INNODB_TRX every 50 ms for the whole test (as monitoring
agents do: dbfleet.transactions.InnodbTrxPoller), so InnoDB never refreshes that cache. Each
round opens SESSIONS sessions; about half take an open-transaction shape (every shape of
dbfleet.transactions.OPEN_SHAPES: a bare BEGIN, BEGIN + SELECT, an uncommitted UPDATE,
SELECT ... FOR UPDATE, autocommit=0 + DML or SELECT, WITH CONSISTENT SNAPSHOT, READ ONLY, XA
START, XA START + UPDATE + XA END), the others a shape outside any transaction (never one,
after an autocommit UPDATE, a COMMIT, a ROLLBACK), at random moments in the few hundred ms
before the sweep; then the driver lists the sessions and a sweep with an idle rule
(`states: [idle]`) runs through _runner.apply_policy. LATE_SHARE of the idle ones open a
transaction (one of dbfleet.transactions.LATE_STARTS) at a random moment while the sweep runs,
spread over the time the previous round's sweep took.

Asserts: no open transaction classified idle nor ended (the shapes were taken before the
sweep began: any kill of one is wrong); every idle session that stayed idle ended (the fix
does not turn idle rules off); a late start the server had answered before its session died
(killed inside its transaction: the window between the guard's read and its KILL) at most
ALLOWED_LATE_RATE of the late starts. Prints how many of the open transactions INNODB_TRX
listed (how starved its cache was) and how many the former classification (Sleep without an
INNODB_TRX row is idle) would have taken for idle.

Knobs: RELIABILITY_TRX_ROUNDS (20), RELIABILITY_TRX_SESSIONS (30), RELIABILITY_TRX_LATE_SHARE
(0.3), RELIABILITY_TRX_SECONDS (180: no new round after this), RELIABILITY_TRX_SEED.
Needs one MariaDB server of the fleet (mariadb1), started with the transaction events on (the
test fleet is).
"""

import os
import random
import threading
import time
import uuid

import pymysql
import pytest
from _common import admin_execute, driver_module, driver_params, figure
from dbfleet import holder
from dbfleet import transactions as trx

SERVER = "mariadb1"
ROUNDS = int(os.environ.get("RELIABILITY_TRX_ROUNDS", "20"))
SESSIONS = int(os.environ.get("RELIABILITY_TRX_SESSIONS", "30"))
LATE_SHARE = float(os.environ.get("RELIABILITY_TRX_LATE_SHARE", "0.3"))
RACE_SECONDS = float(os.environ.get("RELIABILITY_TRX_SECONDS", "180"))
SEED = os.environ.get("RELIABILITY_TRX_SEED")
# A late start the server answered before the guard's read is refused; one in the microseconds
# between that read and the KILL is not (no compare-and-kill on MariaDB): the same bound as the
# wake race's.
ALLOWED_LATE_RATE = 0.005
# How long the shapes are spread over before the sweep, and how long the sessions then stay
# idle (above the driver's idle proof, so that every idle one can be ended).
SPREAD_SECONDS = 0.2
SETTLE_SECONDS = 0.25


@pytest.fixture(scope="module")
def table(fleet):
    name = "rtx_" + uuid.uuid4().hex[:8]
    admin_execute(fleet.server(SERVER), f"CREATE TABLE appdb.{name} (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
    yield name
    admin_execute(fleet.server(SERVER), f"DROP TABLE IF EXISTS appdb.{name}")


class LateStart(threading.Thread):
    """Opens a transaction on an idle session at a given moment; records whether the server
    answered (then a later death of the session is a kill inside its transaction)."""

    def __init__(self, session, shape, at):
        threading.Thread.__init__(self, daemon=True)
        self.session, self.shape, self.at = session, shape, at
        self.answered = False

    def run(self):
        time.sleep(max(0.0, self.at - time.monotonic()))
        try:
            trx.take(self.session, self.shape)
            self.answered = True
        except pymysql.MySQLError:
            pass  # killed before (or while) the server ran it: no transaction lost


def _round(fleet, table, rng, tag, window, counts):
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import apply_policy

    shapes = list(trx.OPEN_SHAPES) + list(trx.CLOSED_SHAPES)
    sessions = []
    try:
        for index in range(SESSIONS):
            shape = rng.choice(list(trx.OPEN_SHAPES)) if index % 2 == 0 else rng.choice(list(trx.CLOSED_SHAPES))
            held = holder.open_session(fleet, SERVER, "idle", application=f"{tag}-{index}", database="appdb")
            sessions.append((trx.prepare(held, table), shape))
        assert set(s for dummy, s in sessions) <= set(shapes)
        for session, shape in rng.sample(sessions, len(sessions)):
            trx.take(session, shape)
            time.sleep(rng.uniform(0, SPREAD_SECONDS / SESSIONS * 2))
        time.sleep(SETTLE_SECONDS)
        opened = [session for session, shape in sessions if shape in trx.OPEN_SHAPES]
        idle = [session for session, shape in sessions if shape in trx.CLOSED_SHAPES]
        cached = trx.innodb_trx_ids(fleet, SERVER)
        mysql = driver_module("mysql")
        policy = parse_policy({"name": tag, "rules": [{"states": ["idle"], "applications": [tag + "-*"]}]})
        d = mysql.open_driver(driver_params(fleet, SERVER))
        try:
            records = dict((r["id"], r) for r in d.list_sessions())
            late = [
                LateStart(session, rng.choice(trx.LATE_STARTS), time.monotonic() + rng.uniform(0, window))
                for session in idle
                if rng.random() < LATE_SHARE
            ]
            start = time.monotonic()
            for thread in late:
                thread.start()
            result = apply_policy(d, policy, check_mode=False, wait_timeout=5)
            took = time.monotonic() - start
        finally:
            d.close()
        for thread in late:
            thread.join(10)
        assert not result.get("failed"), result.get("msg")
        ended = set(e["id"] for e in result["terminated"])
        late_ids = set(thread.session.id for thread in late)
        counts["open"] += len(opened)
        counts["open_idle"] += sum(1 for s in opened if records[s.id]["state"] != "idle_in_transaction")
        counts["open_ended"] += sum(1 for s in opened if s.id in ended or not s.alive())
        counts["innodb_listed"] += sum(1 for s in opened if s.id in cached)
        # the former classification: a Sleep thread without an INNODB_TRX row is idle
        counts["former_idle"] += sum(1 for s in opened if records[s.id]["transaction_started"] is None)
        counts["idle"] += len([s for s in idle if s.id not in late_ids])
        counts["idle_ended"] += sum(1 for s in idle if s.id not in late_ids and s.id in ended)
        counts["late"] += len(late)
        counts["late_answered"] += sum(1 for t in late if t.answered)
        counts["late_killed_in"] += sum(1 for t in late if t.answered and not t.session.alive())
        counts["rounds"] += 1
        return took
    finally:
        for session, _dummy in sessions:
            session.close()


def test_no_open_transaction_is_taken_for_idle_beside_a_starving_poller(fleet, table):
    rng = random.Random(SEED)
    counts = {
        name: 0
        for name in [
            "rounds",
            "open",
            "open_idle",
            "open_ended",
            "innodb_listed",
            "former_idle",
            "idle",
            "idle_ended",
            "late",
            "late_answered",
            "late_killed_in",
        ]
    }
    d = driver_module("mysql").open_driver(driver_params(fleet, SERVER))
    try:
        facts = d.server_facts()
    finally:
        d.close()
    assert facts["transaction_state_exact"], (
        "%s must run with performance_schema's transaction events on (tools/dbfleet/mariadb.py starts it so): %s"
        % (SERVER, facts["transaction_state_detail"])
    )
    tag = "rtx-%s" % uuid.uuid4().hex[:6]
    window, deadline = 0.05, time.monotonic() + RACE_SECONDS
    with trx.InnodbTrxPoller(fleet, SERVER, limit=RACE_SECONDS + 120) as poller:
        for number in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            window = _round(fleet, table, rng, f"{tag}-r{number}", window, counts)
    figure(
        "transaction state, MariaDB, beside a 20 Hz INNODB_TRX poller (%d reads), %d rounds: "
        "%d of %d open transactions (every shape) taken for idle, %d ended by the idle rule; "
        "INNODB_TRX listed %d of them (the former classification would have taken %d for idle); "
        "%d of %d idle sessions ended; late starts during the sweep: %d, %d answered, %d of those killed "
        "inside their transaction"
        % (
            poller.reads,
            counts["rounds"],
            counts["open_idle"],
            counts["open"],
            counts["open_ended"],
            counts["innodb_listed"],
            counts["former_idle"],
            counts["idle_ended"],
            counts["idle"],
            counts["late"],
            counts["late_answered"],
            counts["late_killed_in"],
        )
    )
    assert counts["open"] > 0 and counts["idle"] > 0
    assert counts["open_idle"] == 0 and counts["open_ended"] == 0
    assert counts["idle_ended"] == counts["idle"]
    assert counts["late_killed_in"] <= int(ALLOWED_LATE_RATE * max(counts["late"], 1))
