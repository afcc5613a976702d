# -*- coding: utf-8 -*-
"""The lock worked example of the lock-chains guide, run as the guide writes it, on real servers.

The policy (its YAML block), the two commands and the output they print are all
read from the section "Lock chains ... worked example" of docs/guides/lock-chains.md, so the
guide and this test cannot drift apart: the test plants the situation the section describes
(a transaction left open with two updates queued behind it; an ALTER TABLE queued
behind a long report), waits the policy's own durations (30s), runs the dry run
then the real run, and checks the servers' state and that the output shown in the
guide is the output the run prints (ids, ages and addresses aside).
"""

import os
import re
import shlex
import time

import pytest
import yaml
from _roles_fixtures import AUDIT, ROOT, close_all, read_json, write_inventory
from conftest import run_playbook, wait_until
from dbfleet import holder

GUIDE = os.path.join("docs", "guides", "lock-chains.md")
HEADING = "## Lock chains: end the blocker, not the queue"
HOSTS = ("pg1", "mariadb1")
# How each engine reports the cancelled ALTER to its client.
CANCELLED = {"postgresql": "canceling statement due to user request", "mysql": "Query execution was interrupted"}
# What the section plants, by application name (holder kinds, in the order they are opened).
PLANTED = (
    ("desktop-client", "row_lock_holder"),
    ("webapp", "row_lock_waiter"),
    ("webapp", "row_lock_waiter"),
    ("nightly-report", "long_read"),
    ("migration", "ddl_waiter"),
)


def guide_section():
    with open(os.path.join(ROOT, GUIDE), encoding="utf-8") as handle:
        text = handle.read()
    lines = text[text.index(HEADING) :].splitlines(True)
    fenced = False
    for number, line in enumerate(lines[1:], 1):
        fenced = fenced != line.startswith("```")
        if not fenced and line.startswith("## "):  # the next section (a "## " in a code block is not one)
            return "".join(lines[:number])
    return "".join(lines)


def fenced_blocks(section, language):
    return re.findall(r"^```" + language + r"\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def example():
    """(group_vars, [(command, shown output)], the audit report's lock chains shown) of the guide's section."""
    section = guide_section()
    [group_vars] = [yaml.safe_load(block) for block in fenced_blocks(section, "yaml")]
    runs = []
    for block in fenced_blocks(section, "console"):
        first, _newline, output = block.partition("\n")
        assert first.startswith("$ "), block
        runs.append((first[2:], output))
    [audit_shown] = fenced_blocks(section, "markdown")
    return group_vars, runs, audit_shown


def command_options(command):
    """The guide's command as run_playbook options; anything else in it fails the test."""
    argv = shlex.split(command)
    assert argv[:4] == ["ansible-playbook", "dbhygiene.sessions.enforce", "-i", "inventory.yml"], command
    extra = argv[4:]
    assert set(extra) <= {"--check", "--diff"}, command
    return {"check": "--check" in extra, "diff": "--diff" in extra}


_NUMBER = re.compile(r"\d+")


def session_lines(text):
    """The diff's session lines and header, the recap lines: numbers (ids, ages, counts, addresses) as N."""
    found = set()
    for line in text.splitlines():
        if re.match(r"^[-+ ]?(\d+ \S+@\S+ |# policy )", line) or re.match(r"^\S+\s+: ok=", line):
            found.add(_NUMBER.sub("N", re.sub(r"\s+", " ", line.strip())))
    return found


def chain_rows(markdown):
    """The rows of the report's lock chains table, numbers as N."""
    lines = markdown[markdown.index("## Lock chains") :].splitlines()
    return {_NUMBER.sub("N", line) for line in lines if line.startswith("| ") and not line.startswith("| host")}


def test_the_guide_names_what_the_test_plants():
    group_vars, runs, _audit_shown = example()
    rules = {rule["name"]: rule for rule in group_vars["dbhygiene_policy"]["rules"]}
    assert rules["blocker-left-open"]["blocking_longer_than"] == "30s"
    assert rules["ddl-waiting"]["waiting_longer_than"] == "10s" and rules["ddl-waiting"]["action"] == "cancel"
    assert [command_options(command) for command, _output in runs] == [
        {"check": True, "diff": True},
        {"check": False, "diff": True},
    ]
    section = guide_section()
    for application, _kind in PLANTED:
        assert f"app='{application}'" in section or f"`{application}`" in section, application


@pytest.fixture
def planted(fleet):
    held = {host: [] for host in HOSTS}
    try:
        for host in HOSTS:
            for application, kind in PLANTED:
                held[host].append(
                    holder.open_session(
                        fleet, host, kind, application=application, lock_key="readme-locks", seconds=600
                    )
                )
        yield held
    finally:
        close_all([session for sessions in held.values() for session in sessions])


def _by_name(sessions):
    named = {}
    for session in sessions:
        named.setdefault(session.application, []).append(session)
    return named


def test_the_guides_lock_example_as_written(fleet, tmp_path, planted):
    group_vars, runs, audit_shown = example()
    group_vars = dict(
        group_vars, dbhygiene_report_dir=str(tmp_path / "reports"), dbhygiene_audit_log=str(tmp_path / "audit.jsonl")
    )
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=HOSTS)
    # The policy's own durations: the updates have waited more than 30s, the ALTER more than 10s.
    time.sleep(31.5)
    (dry_command, dry_shown), (real_command, real_shown) = runs

    audit = run_playbook(AUDIT, inventory=inventory, check=True)
    assert audit.rc == 0, audit.output
    with open(str(tmp_path / "reports" / "audit-latest.md")) as handle:
        assert chain_rows(handle.read()) == chain_rows(audit_shown)

    dry = run_playbook("dbhygiene.sessions.enforce", inventory=inventory, **command_options(dry_command))
    assert dry.rc == 0, dry.output
    report = read_json(str(tmp_path / "reports" / "enforce-check-latest.json"))  # a dry run's own report
    for host, sessions in planted.items():
        named = _by_name(sessions)
        entry = report["hosts"][host]
        assert [item["id"] for item in entry["terminated"]] == [named["desktop-client"][0].id], entry
        assert [item["id"] for item in entry["cancelled"]] == [named["migration"][0].id], entry
        assert all(session.alive() for session in sessions)  # a dry run
    assert session_lines(dry.stdout) == session_lines(dry_shown), dry.stdout

    real = run_playbook("dbhygiene.sessions.enforce", inventory=inventory, **command_options(real_command))
    assert real.rc == 0, real.output
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    for host, sessions in planted.items():
        named = _by_name(sessions)
        entry = report["hosts"][host]
        assert [item["id"] for item in entry["terminated"]] == [named["desktop-client"][0].id], entry
        assert [item["id"] for item in entry["cancelled"]] == [named["migration"][0].id], entry
        # The blocker is gone; the queued updates went through; the ALTER was cancelled and
        # its connection kept; the report it waited for runs on.
        assert not named["desktop-client"][0].alive()
        for waiter in named["webapp"]:
            assert wait_until(lambda w=waiter: w.state() in ("idle", "Sleep"), 10), (host, waiter.id, waiter.state())
            waiter.thread.join(5)
            assert waiter.error is None, (host, waiter.error)
        migration = named["migration"][0]
        migration.thread.join(10)
        assert migration.alive() and CANCELLED[migration.engine] in str(migration.error), (host, migration.error)
        assert named["nightly-report"][0].state() in ("active", "Query")
    assert session_lines(real.stdout) == session_lines(real_shown), real.stdout

    # Idempotent: nothing is left to end.
    again = run_playbook("dbhygiene.sessions.enforce", inventory=inventory, **command_options(real_command))
    assert again.rc == 0, again.output
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    assert report["totals"]["ended"] == 0
