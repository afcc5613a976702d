# -*- coding: utf-8 -*-
"""pgbench under enforce sweeps: a busy application loses no transaction.

8 pgbench clients run for RELIABILITY_PGBENCH_SECONDS (30) on pg1 while the
enforce playbook runs again 2-3 s after each run ends, with a policy that ends the `app` login's
sessions idle (or idle in a transaction) for more than 1 s. The pgbench clients,
also `app`, are never idle that long; ghost sessions planted before each sweep
are. Asserted: pgbench ends normally with 0 failed transactions and no aborted
client, and the sweeps did end the ghosts. Printed: transactions, tps, sweeps.
"""

import os
import random
import re
import subprocess
import time

from _common import ENFORCE, Play, figure, new_tag, write_inventory
from dbfleet import holder, postgres
from dbfleet import state as fleet_state

SECONDS = int(os.environ.get("RELIABILITY_PGBENCH_SECONDS", "30"))
CLIENTS = 8
GHOSTS_PER_SWEEP = 3


def pgbench_binary():
    path = os.path.join(postgres.bindir(), "pgbench")
    assert os.path.exists(path), "pgbench is missing: %s (Debian ships it in postgresql-15)" % path
    return path


def _pgbench(fleet, server, *args):
    env = dict(os.environ, PGPASSWORD=fleet.password("app"), PGSSLMODE="disable", PGAPPNAME="pgbench")
    argv = [pgbench_binary(), "-h", server["host"], "-p", str(server["port"]), "-U", "app"] + list(args)
    return subprocess.Popen(
        argv + [fleet_state.APP_DATABASE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_pgbench_loses_no_transaction_under_sweeps(fleet, tmp_path):
    server = fleet.server("pg1")
    init = _pgbench(fleet, server, "-i", "-q", "-s", "2")
    init_output = init.communicate(timeout=300)[0]
    assert init.returncode == 0, init_output
    tag = new_tag("bench")
    policy = {
        "name": "pgbench-sweep",
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},  # a stress test, not a limits test
        "rules": [
            {"name": "idle", "states": ["idle"], "users": ["app"], "idle_longer_than": 1},
            {"name": "stuck", "states": ["idle_in_transaction"], "users": ["app"], "idle_longer_than": 1},
        ],
    }
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
        "dbhygiene_wait_timeout": 5,
    }
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=["pg1"])
    bench = _pgbench(fleet, server, "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS), "-n", "-P", "10")
    started = time.monotonic()
    sweeps, terminated, failed_plays, ghosts = 0, 0, [], []
    try:
        while bench.poll() is None and time.monotonic() - started < SECONDS - 2:
            ghosts += [
                holder.open_session(fleet, "pg1", "idle", application="%s-ghost" % tag, seconds=120)
                for _n in range(GHOSTS_PER_SWEEP)
            ]
            time.sleep(random.uniform(2, 3))
            play = Play(inventory, playbook=ENFORCE).wait(120)
            sweeps += 1
            if play.rc != 0:
                failed_plays.append(play.output[-2000:])
            for result in play.host_results().values():
                terminated += len(result.get("terminated") or [])
        output = bench.communicate(timeout=SECONDS + 120)[0]
    finally:
        if bench.poll() is None:
            bench.kill()
        for ghost in ghosts:
            ghost.close()
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    tps = re.search(r"tps = ([\d.]+)", output)
    figure(
        "pgbench %d clients %d s on postgresql with %d enforce sweeps (each 2-3 s after the last): "
        "%s transactions, %s failed, %s tps; the sweeps ended %d ghost sessions"
        % (
            CLIENTS,
            SECONDS,
            sweeps,
            processed.group(1) if processed else "?",
            failed.group(1) if failed else "?",
            "%.0f" % float(tps.group(1)) if tps else "?",
            terminated,
        )
    )
    assert bench.returncode == 0, output[-3000:]
    assert "aborted" not in output, output[-3000:]
    assert processed and int(processed.group(1)) > 0, output[-3000:]
    assert failed is None or int(failed.group(1)) == 0, output[-3000:]
    assert not failed_plays, failed_plays[0]
    assert terminated >= GHOSTS_PER_SWEEP, "the sweeps ended %d ghosts in %d sweeps" % (terminated, sweeps)
