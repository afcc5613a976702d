# -*- coding: utf-8 -*-
"""The flipping-sessions workload of the race test, as a process of its own.

    python _workload.py --server pg1 --prefix P --steady 25 --flippers 25 --seconds 120 --out FILE

Opens `steady` sessions that stay idle and `flippers` sessions that flip between
idle (a few ms) and a 10 ms statement or a short transaction, on one fleet
server. A session that is ended reconnects at once, so the sweeps always find
victims. Application names: `P-steady-N`, `P-flip-N`.

Each session knows what it was doing when it died, without guessing: while idle
it waits on its socket with select(), so a kill that lands while idle is seen
there (the server closes the connection) before anything else is sent; a death
seen while a statement or a transaction is under way was a kill in a statement
or in a transaction. On SIGTERM (or after --seconds) it writes
{"deaths": [...], "sessions": [...], "statements": N, "transactions": N} to --out
and exits; the connections are closed from the client side (no server-side kill,
so the server log holds only the sweeps' kills).
"""

import argparse
import json
import os
import random
import select
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))

import psycopg2  # noqa: E402
import pymysql  # noqa: E402
from dbfleet import state  # noqa: E402

STATEMENT_SECONDS = 0.01
IDLE_RANGE = (0.002, 0.02)  # the idle stretch of a flipper between two statements
# One idle stretch in five is longer than the MySQL driver's idle proof (150 ms, InnoDB's
# transaction cache), so that flippers are victims on MariaDB too, not only young and spared.
LONG_IDLE_SHARE, LONG_IDLE_RANGE = 0.2, (0.16, 0.3)
IN_TRANSACTION_SECONDS = 0.005  # a flipper's transaction sits idle in transaction this long
LONG_IN_TRANSACTION_SECONDS = 0.2  # ... and one in five this long


class Died(Exception):
    pass


class Session(object):
    """One client connection of the workload, PostgreSQL or MariaDB."""

    def __init__(self, server, password, application):
        self.engine = server["engine"]
        self.application = application
        if self.engine == "postgresql":
            self.conn = psycopg2.connect(
                host=server["host"],
                port=server["port"],
                user="app",
                password=password,
                dbname=state.APP_DATABASE,
                application_name=application,
                sslmode="disable",
                connect_timeout=10,
            )
            self.conn.autocommit = True
            self.id = self.one("SELECT pg_backend_pid()")
            self.sock = self.conn.fileno()
        else:
            self.conn = pymysql.connect(
                host=server["host"],
                port=server["port"],
                user="app",
                password=password,
                database=state.APP_DATABASE,
                program_name=application,
                ssl_disabled=True,
                autocommit=True,
                connect_timeout=10,
            )
            self.id = self.one("SELECT CONNECTION_ID()")
            self.sock = self.conn._sock.fileno()

    def one(self, statement):
        cur = self.conn.cursor()
        cur.execute(statement)
        row = cur.fetchone()
        return row[0] if row else None

    def run(self, statement):
        try:
            cur = self.conn.cursor()
            cur.execute(statement)
            if cur.description:
                cur.fetchall()
        except (psycopg2.Error, pymysql.MySQLError, OSError) as exc:
            raise Died(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    def idle(self, seconds):
        """Stay idle `seconds`; raise Died when the server closes the connection meanwhile."""
        readable, _w, _x = select.select([self.sock], [], [], seconds)
        if readable:
            raise Died("connection closed while idle")

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def statement(engine):
    if engine == "postgresql":
        return "SELECT pg_sleep(%s)" % STATEMENT_SECONDS
    return "SELECT SLEEP(%s)" % STATEMENT_SECONDS


def transaction(engine, session_id):
    if engine == "postgresql":
        return ["BEGIN", "SELECT txid_current()"], "COMMIT"
    row = "INSERT INTO rel_flip (id, n) VALUES (%d, 1) ON DUPLICATE KEY UPDATE n = n + 1" % session_id
    return ["START TRANSACTION", row], "COMMIT"


class Worker(threading.Thread):
    def __init__(self, workload, server, password, application, flipping):
        threading.Thread.__init__(self, daemon=True)
        self.workload = workload
        self.server = server
        self.password = password
        self.application = application
        self.flipping = flipping
        self.session = None

    def _death(self, doing, detail):
        self.workload.record(
            {
                "application": self.application,
                "id": self.session.id,
                "flipping": self.flipping,
                "doing": doing,
                "detail": detail,
                "time": time.time(),
            }
        )

    def run(self):
        rng = random.Random(self.application)
        while not self.workload.stopping.is_set():
            try:
                self.session = Session(self.server, self.password, self.application)
            except Exception as exc:
                # Ended by a sweep before or during its first statement (SELECT pg_backend_pid()),
                # or refused a connection: the record says which.
                self.workload.record(
                    {
                        "application": self.application,
                        "id": None,
                        "flipping": self.flipping,
                        "doing": "connect",
                        "detail": str(exc).strip()[:200],
                        "time": time.time(),
                    }
                )
                time.sleep(0.05)  # e.g. the server is at max_connections for a moment
                continue
            self.workload.connected({"id": self.session.id, "application": self.application, "flipping": self.flipping})
            doing = "idle"
            try:
                while not self.workload.stopping.is_set():
                    doing = "idle"
                    long_idle = rng.random() < LONG_IDLE_SHARE
                    self.session.idle(
                        rng.uniform(*(LONG_IDLE_RANGE if long_idle else IDLE_RANGE)) if self.flipping else 0.2
                    )
                    if not self.flipping:
                        continue
                    if rng.random() < 0.5:
                        doing = "statement"
                        self.session.run(statement(self.session.engine))
                        self.workload.count("statements")
                    else:
                        doing = "transaction"
                        opening, closing = transaction(self.session.engine, self.session.id)
                        for sql in opening:
                            self.session.run(sql)
                        long_idle = rng.random() < LONG_IDLE_SHARE
                        self.session.idle(LONG_IN_TRANSACTION_SECONDS if long_idle else IN_TRANSACTION_SECONDS)
                        self.session.run(closing)
                        self.workload.count("transactions")
            except Died as exc:
                if not self.workload.stopping.is_set():
                    self._death(doing, str(exc)[:200])
            self.session.close()


class Workload(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.deaths = []
        self.counts = {"statements": 0, "transactions": 0}
        self.sessions = []
        self.stopping = threading.Event()

    def connected(self, session):
        with self.lock:
            self.sessions.append(session)

    def record(self, death):
        with self.lock:
            self.deaths.append(death)

    def count(self, name):
        with self.lock:
            self.counts[name] += 1


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--steady", type=int, default=25)
    parser.add_argument("--flippers", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    fleet = state.load()
    server = fleet.server(args.server)
    password = fleet.password("app")
    if server["engine"] == "mysql":
        setup = Session(server, password, args.prefix + "-setup")
        setup.run("CREATE TABLE IF NOT EXISTS rel_flip (id BIGINT PRIMARY KEY, n INT) ENGINE=InnoDB")
        setup.close()
    # A thread back from its idle select() must not wait long for the GIL before its
    # statement goes out: that gap is where the flippers' own view overcounts.
    sys.setswitchinterval(0.0005)
    workload = Workload()
    signal.signal(signal.SIGTERM, lambda *a: workload.stopping.set())
    workers = [Worker(workload, server, password, "%s-steady-%d" % (args.prefix, n), False) for n in range(args.steady)]
    workers += [Worker(workload, server, password, "%s-flip-%d" % (args.prefix, n), True) for n in range(args.flippers)]
    for worker in workers:
        worker.start()
    print("ready", flush=True)
    workload.stopping.wait(args.seconds)
    workload.stopping.set()
    for worker in workers:
        worker.join(5)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(dict(workload.counts, deaths=workload.deaths, sessions=workload.sessions), handle)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
