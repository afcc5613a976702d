# -*- coding: utf-8 -*-
"""End to end: one policy in group_vars, the enforce playbook on six real servers
of both engines plus one host that is down.

dry run (--check --diff) -> real run -> second run, asserting each time the
servers' real sessions (admin login), the fleet report and the audit trail.
"""

import os
import stat
import time

from _roles_fixtures import (
    DOWN_ADDRESS,
    ENFORCE,
    SERVERS,
    close_all,
    ended_keys,
    is_idle,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    write_inventory,
)
from conftest import run_playbook, wait_until


def _policy(tag):
    return {
        "name": "e2e-" + tag,
        "rules": [
            {"name": "ghost-idle", "states": ["idle"], "applications": [tag + "-ghost*"], "idle_longer_than": "2s"},
            {
                "name": "stuck-transaction",
                "states": ["idle_in_transaction"],
                "applications": [tag + "-stuck"],
                "idle_longer_than": 2,
            },
            {
                "name": "runaway-query",
                "states": ["active"],
                "applications": [tag + "-batch"],
                "running_longer_than": "2s",
                "action": "cancel",
            },
        ],
        "protect": {"applications": [tag + "-ghost-keep"]},
        # A quiet server's sessions may all be the test's: max_fraction lifted, max_terminations set.
        "limits": {"max_terminations": 10, "max_fraction": "unlimited"},
    }


def test_enforce_dry_run_real_run_second_run(fleet, tmp_path):
    tag = new_tag("e2e")
    report_dir = tmp_path / "reports"
    trail = str(tmp_path / "audit" / "trail.jsonl")
    inventory = write_inventory(
        fleet,
        tmp_path,
        {"dbhygiene_policy": _policy(tag), "dbhygiene_report_dir": str(report_dir), "dbhygiene_audit_log": trail},
        down_host=True,
    )
    kinds = (
        ("ghost", "idle"),  # terminated
        ("stuck", "idle_in_transaction"),  # terminated
        ("batch", "active"),  # statement cancelled, connection kept
        ("ghost-keep", "idle"),  # matches ghost-idle, but protected
        ("web", "idle"),  # legitimate: no rule names it
    )
    held = open_sessions(fleet, [(server, kind, "%s-%s" % (tag, name)) for server in SERVERS for name, kind in kinds])
    by_name = {(s.server["name"], s.application[len(tag) + 1 :]): s for s in held}
    password = fleet.password("hygiene")
    try:
        time.sleep(2.5)  # let the sessions age past the 2s of the rules

        # 1. Dry run: ends nothing, reports the victims, marks the trail lines as check mode.
        dry = run_playbook(ENFORCE, inventory=inventory, check=True, diff=True)
        assert dry.rc != 0, dry.output  # pgdown is down
        assert dry.stats["pgdown"]["failures"] == 1
        for server in SERVERS:
            assert dry.stats[server]["failures"] == 0, dry.output
            assert dry.stats[server]["changed"] == 1, dry.output
            live = live_sessions(fleet, server, tag)
            assert set(live) == {s.id for s in held if s.server["name"] == server}, "the dry run ended something"
        dry_report = read_json(str(report_dir / "enforce-check-latest.json"))
        assert dry_report["check_mode"] is True
        expected = set()
        for server in SERVERS:
            expected |= {
                (server, by_name[server, "ghost"].id, "terminated"),
                (server, by_name[server, "stuck"].id, "terminated"),
                (server, by_name[server, "batch"].id, "cancelled"),
            }
        dry_ended = ended_keys(dry_report)
        assert ended_keys(dry_report, "id") == expected
        assert "pgdown" in dry_report["failed_hosts"]
        assert DOWN_ADDRESS in dry_report["failed_hosts"]["pgdown"]
        assert dry_report["failed_host_reasons"] == {"pgdown": "unreachable"}
        assert dry_report["totals"]["failed"] == 1 and dry_report["totals"]["ok"] == 6
        for server in SERVERS:
            protected = dry_report["hosts"][server]["not_ended_by_reason"].get("protected")
            assert protected == 1, dry_report["hosts"][server]
        dry_lines = read_trail(trail)
        assert len(dry_lines) == 18
        assert all(line["check_mode"] is True for line in dry_lines)
        assert {line["outcome"] for line in dry_lines} == {"would_terminate", "would_cancel"}
        assert stat.S_IMODE(os.stat(trail).st_mode) == 0o600

        # 2. Real run: ends exactly what the dry run reported, nothing else.
        real = run_playbook(ENFORCE, inventory=inventory)
        assert real.rc != 0 and real.stats["pgdown"]["failures"] == 1, real.output
        real_report = read_json(str(report_dir / "enforce-latest.json"))
        assert real_report["check_mode"] is False
        assert ended_keys(real_report) == dry_ended
        assert real_report["totals"]["ended"] == 18 and real_report["totals"]["not_ended"] == 0
        assert "pgdown" in real_report["failed_hosts"]
        for server in SERVERS:
            engine = fleet.server(server)["engine"]

            def settled(server=server, engine=engine):
                live = live_sessions(fleet, server, tag)
                return by_name[server, "batch"].id in live and is_idle(engine, live[by_name[server, "batch"].id])

            assert wait_until(settled, timeout=10.0, interval=0.1), live_sessions(fleet, server, tag)
            live = live_sessions(fleet, server, tag)
            assert by_name[server, "ghost"].id not in live
            assert by_name[server, "stuck"].id not in live
            for name in ("batch", "ghost-keep", "web"):
                assert by_name[server, name].id in live, (server, name)
        real_lines = read_trail(trail)[len(dry_lines) :]
        assert len(real_lines) == 18, real_lines
        assert all(line["check_mode"] is False for line in real_lines)
        assert {(line["host"], line["key"], line["outcome"]) for line in real_lines} == dry_ended
        dry_of = {"terminated": "would_terminate", "cancelled": "would_cancel"}
        assert {(line["host"], line["key"], dry_of[line["outcome"]]) for line in real_lines} == {
            (line["host"], line["key"], line["outcome"]) for line in dry_lines
        }
        for line in real_lines:
            assert line["policy"] == "e2e-" + tag and line["engine"] in ("postgresql", "mysql")
            assert line["rule"] in ("ghost-idle", "stuck-transaction", "runaway-query")
            assert line["application"].startswith(tag)
            assert line["time"] and line["user"] == "app"

        # 3. Second run: nothing left to do.
        again = run_playbook(ENFORCE, inventory=inventory)
        for server in SERVERS:
            assert again.stats[server]["changed"] == 0, again.output
            assert again.stats[server]["failures"] == 0, again.output
        assert read_json(str(report_dir / "enforce-latest.json"))["totals"]["ended"] == 0
        assert len(read_trail(trail)) == len(dry_lines) + len(real_lines)

        # Never a secret in the output, the reports or the trail.
        texts = [dry.output, real.output, again.output]
        texts += [open(os.path.join(str(report_dir), name)).read() for name in os.listdir(str(report_dir))]
        texts.append(open(trail).read())
        assert not [text for text in texts if password in text]
        markdown = open(str(report_dir / "enforce-latest.md")).read()
        assert "pgdown" in markdown and "Hosts that failed" in markdown
        assert "**pgdown** (unreachable: the database server could not be reached)" in markdown
        # One time-stamped report per run, none replaced by another.
        assert len([n for n in os.listdir(str(report_dir)) if n.endswith(".json") and "latest" not in n]) == 3
    finally:
        close_all(held)
