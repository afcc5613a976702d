# -*- coding: utf-8 -*-
"""Three enforce runs at once on the same hosts, one trail, one report directory.

Asserted: every run ends; each trail line is whole JSON with the contract's fields (docs/architecture.md);
the trail holds exactly the lines the three runs reported (none lost, none
doubled by the writer); every ghost is gone. Printed: sessions reported
terminated by more than one run (must become 0 with the sweep lock) and how
many report files the runs kept.
"""

import collections
import os
import time

from _common import ENFORCE, Play, figure, new_tag, not_ended, read_trail, write_inventory
from dbfleet import holder

HOSTS = ("pg1", "pg2", "mariadb1", "mariadb2")
GHOSTS = int(os.environ.get("RELIABILITY_CONCURRENT_GHOSTS", "25"))
RUNS = 3
TRAIL_FIELDS = ("time", "host", "engine", "policy", "rule", "action", "check_mode", "outcome")


def _expected_lines(host, result):
    lines = []
    for bucket in ("terminated", "cancelled"):
        for entry in result.get(bucket) or []:
            lines.append((host, entry.get("key"), bucket))
    for entry in not_ended(result):
        if entry.get("reason") != "protected":
            lines.append((host, entry.get("key"), "not_ended"))
    return lines


def _trail_line(record):
    outcome = record.get("outcome")
    bucket = outcome if outcome in ("terminated", "cancelled") else "not_ended"
    return (record.get("host"), record.get("key"), bucket)


def test_three_concurrent_enforce_runs(fleet, tmp_path):
    tag = new_tag("conc")
    trail = str(tmp_path / "audit.jsonl")
    report_dir = tmp_path / "reports"
    policy = {
        "name": "concurrent-" + tag,
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},  # a stress test, not a limits test
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
    }
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(report_dir),
        "dbhygiene_audit_log": trail,
        "dbhygiene_wait_timeout": 10,
    }
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=HOSTS)
    ghosts = [
        holder.open_session(fleet, host, "idle", application=tag + "-ghost", seconds=300)
        for host in HOSTS
        for _n in range(GHOSTS)
    ]
    try:
        time.sleep(1.5)
        plays = [Play(inventory, playbook=ENFORCE) for _run in range(RUNS)]
        plays = [play.wait(300) for play in plays]
        left = dict(
            (host, holder.live(fleet.server(host), [g.id for g in ghosts if g.server["name"] == host]))
            for host in HOSTS
        )
    finally:
        for ghost in ghosts:
            ghost.close()
    records, garbled = read_trail(trail)
    expected, terminated_by = [], collections.defaultdict(set)
    for number, play in enumerate(plays):
        for host, result in play.host_results().items():
            expected += _expected_lines(host, result)
            for entry in result.get("terminated") or []:
                terminated_by[(host, entry.get("key"))].add(number)
    doubled = [key for key, runs in terminated_by.items() if len(runs) > 1]
    reports = (
        [n for n in os.listdir(str(report_dir)) if n.endswith(".json") and "latest" not in n]
        if report_dir.exists()
        else []
    )
    figure(
        "concurrent sweeps: %d enforce runs at once on %d hosts, %d ghosts: %d trail lines (%d garbled), "
        "%d expected from the runs' results; %d sessions reported terminated by more than one run; "
        "%d report files kept for %d runs"
        % (RUNS, len(HOSTS), len(ghosts), len(records), len(garbled), len(expected), len(doubled), len(reports), RUNS)
    )
    for play in plays:
        assert not play.timed_out, play.output[-3000:]
    assert not garbled, garbled[:3]
    for record in records:
        missing = [f for f in TRAIL_FIELDS if f not in record]
        assert not missing, "trail line without %s: %r" % (missing, record)
    assert collections.Counter(_trail_line(r) for r in records) == collections.Counter(expected)
    assert not any(left.values()), "ghosts left: %r" % left
