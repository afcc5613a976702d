# -*- coding: utf-8 -*-
"""The sessions of one round of the wake race (test_wake_race.py), as a process of its own.

    python _wakers.py --server mariadb1 --prefix P --table T --plan '[[0, "select", false], ...]'

Opens one MariaDB session per plan entry [slot, kind, frozen] (application `P-<slot>`; a
frozen one sets its clock an hour back, SET timestamp, as mysqlbinlog output does), then
prints one JSON line {"ids": {slot: thread id}, "ready": time.monotonic()} once the last of
them is idle. It then reads one JSON line {"go": monotonic time, "offsets": {slot: seconds
or null}} and wakes each session with an offset at go + offset (null: it stays idle):

- select: one `SELECT 1` (marked with its slot);
- transaction: BEGIN; UPDATE of its row of the table `--table`; a few ms idle in the
  transaction; COMMIT.

It prints {"records": [...]} (per woken session: what it was doing when it died, if it did),
and once it reads one more line (the sweep is over), closes the sessions that are left from
the client side and exits. CLOCK_MONOTONIC is the
same in every process of the machine: the parent's `go` is this process's too.
"""

import argparse
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))

import pymysql  # noqa: E402
from dbfleet import state  # noqa: E402

IN_TRANSACTION_SECONDS = (0.005, 0.03)


def wake(conn, slot, kind, at, table, record, rng):
    time.sleep(max(0.0, at - time.monotonic()))
    record["sent_at"] = time.time()
    doing = "statement"
    try:
        cur = conn.cursor()
        if kind == "select":
            cur.execute("SELECT 1 /* wake-race %d */" % slot)
        else:
            doing = "transaction"
            cur.execute("BEGIN")
            cur.execute("UPDATE %s SET n = n + 1 WHERE id = %d" % (table, slot))
            time.sleep(rng.uniform(*IN_TRANSACTION_SECONDS))
            cur.execute("COMMIT")
        record["died"] = None
    except pymysql.MySQLError as exc:
        record["died"] = doing
        record["error"] = str(exc)[:200]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--plan", required=True)
    args = parser.parse_args()
    fleet = state.load()
    server = fleet.server(args.server)
    plan = json.loads(args.plan)
    conns, ids = {}, {}
    for slot, _kind, frozen in plan:
        conn = pymysql.connect(
            host=server["host"],
            port=server["port"],
            user="app",
            password=fleet.password("app"),
            database="appdb",
            autocommit=True,
            program_name="%s-%d" % (args.prefix, slot),
            ssl_disabled=True,
        )
        if frozen:
            conn.cursor().execute("SET timestamp = UNIX_TIMESTAMP() - 3600")
        conns[slot] = conn
        ids[slot] = conn.thread_id()
    print(json.dumps({"ids": ids, "ready": time.monotonic()}), flush=True)
    order = json.loads(sys.stdin.readline())
    go, offsets = order["go"], order["offsets"]
    records, threads = [], []
    for slot, kind, frozen in plan:
        offset = offsets.get(str(slot))
        if offset is None:
            continue
        record = {"slot": slot, "id": ids[slot], "kind": kind, "frozen": frozen, "offset": offset}
        records.append(record)
        thread = threading.Thread(
            target=wake,
            args=(conns[slot], slot, kind, go + offset, args.table, record, random.Random(slot)),
            daemon=True,
        )
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join(30)
    print(json.dumps({"records": records}), flush=True)
    sys.stdin.readline()  # the sweep is over: only now may the sessions that are left go
    for conn in conns.values():
        try:
            conn.close()
        except Exception:
            pass


if __name__ == "__main__":
    main()
