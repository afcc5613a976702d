# -*- coding: utf-8 -*-
"""The drain role and playbook on real servers (a PostgreSQL and a MariaDB server):
check mode changes nothing; drained refuses the logins and ends the sessions, open
restores the catalog exactly; the fleet report and the trail lines; a bad variable fails
before any connection; a down host fails alone; dbhygiene_run_on controller and host give
the same result; the EXAMPLES of session_drain run as written."""

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import yaml
from _change_window_fixtures import Window, admin_password
from _roles_fixtures import DOWN_HOST, ROOT, close_all, read_json, read_trail, write_inventory
from ansible_collections.dbhygiene.sessions.plugins.modules import session_drain
from conftest import run_playbook
from dbfleet import holder, postgres
from psycopg2 import sql

DRAIN = os.path.join(ROOT, "playbooks", "drain.yml")
HOSTS = ("pg1", "mariadb1")
MODES = ("controller", "host")
DRAIN_TASK = "Drain or open the databases of the change window"
# Trail and result fields that name these very sessions or this run, not the decision.
VOLATILE = {
    "time",
    "job_id",
    "id",
    "key",
    "connected_at",
    "state_since",
    "idle_seconds",
    "query_seconds",
    "transaction_seconds",
    "connected_seconds",
    "client_port",
    "detail",
    "drained_at",
    "acl_before",
    "acl_after",
    "duration",
    "audit_lines",
    "login_host",
    "run_id",
}


def _names(tag):
    return {
        "billing": tag + "_billing",
        "ledger": tag + "_ledger",
        "app": tag + "_app",
        "migrator": tag + "_migrator",
        "clerk": tag + "_clerk",
    }


def _windows(fleet, tag):
    names = _names(tag)
    grants = {
        names["app"]: [names["billing"]],
        names["migrator"]: [names["billing"]],
        names["clerk"]: [names["ledger"]],
    }
    return {
        host: Window(
            fleet,
            host,
            (names["billing"], names["ledger"]),
            (names["app"], names["migrator"], names["clerk"]),
            grants,
        )
        for host in HOSTS
    }


def _group_vars(fleet, directory, tag, **extra):
    names = _names(tag)
    group_vars = {
        # Revoking CONNECT as every grantor takes a PostgreSQL superuser; ACCOUNT LOCK, CREATE USER on MariaDB.
        "dbhygiene_login_user": "fleet_admin",
        "dbhygiene_login_password": admin_password(fleet),
        "dbhygiene_drain_databases": [names["billing"]],
        "dbhygiene_drain_allow_users": [names["migrator"]],
        "dbhygiene_drain_grace": "2s",
        "dbhygiene_report_dir": os.path.join(directory, "reports"),
        "dbhygiene_audit_log": os.path.join(directory, "audit.jsonl"),
    }
    group_vars.update(extra)
    return group_vars


def _inventory(fleet, directory, group_vars, hosts=HOSTS, down_host=False):
    path = write_inventory(fleet, directory, group_vars, hosts=hosts, down_host=down_host)
    # The role's login is the admin one: the inventory's hygiene login (host vars) must not win.
    with open(path) as handle:
        inventory = yaml.safe_load(handle)
    for group in inventory["all"]["children"]["databases"]["children"].values():
        for name in ("dbhygiene_login_user", "dbhygiene_login_password"):
            group["vars"].pop(name, None)
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)
    return path


def _results(run, task=DRAIN_TASK):
    found = {}
    for record in run.results:
        if record["task"].endswith(task):
            found[record["host"]] = record["result"]
    return found


def _stable(value, tag):
    if isinstance(value, dict):
        return {k: _stable(v, tag) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v, tag) for v in value]
    if isinstance(value, str):
        return value.replace(tag, "TAG")
    return value


def _outcome(result, tag):
    """What a host's drain result says, without the identity of these sessions."""
    ended = sorted(
        [e.get("user"), e.get("database"), bucket]
        for bucket in ("terminated", "cancelled")
        for e in result.get(bucket) or []
    )
    return _stable(
        {
            "changed": result.get("changed"),
            "failed": bool(result.get("failed")),
            "state": result.get("state"),
            "changes": sorted(
                json.dumps({k: v for k, v in c.items() if k not in VOLATILE}, sort_keys=True)
                for c in result.get("changes") or []
            ),
            "ended": ended,
            "not_ended": sorted([e.get("user"), e.get("reason")] for e in result.get("not_ended") or []),
            "closed": result.get("closed"),
            "dbhygiene": result.get("dbhygiene"),
        },
        tag,
    )


def _hold(fleet, tag):
    """On each host: the app's idle session and running statement on billing, the
    migrator's session on billing, the clerk's on ledger."""
    names = _names(tag)
    plan = [
        ("app-idle", "idle", names["app"], names["billing"]),
        ("app-busy", "active", names["app"], names["billing"]),
        ("migrator", "idle", names["migrator"], names["billing"]),
        ("clerk", "idle", names["clerk"], names["ledger"]),
    ]
    held = {}
    try:
        for host in HOSTS:
            for label, kind, user, database in plan:
                held[(host, label)] = holder.open_session(
                    fleet,
                    host,
                    kind,
                    user=user,
                    password="Window-pw-1",
                    database=database,
                    application="%s-%s" % (tag, label),
                )
    except Exception:
        close_all(held.values())
        raise
    return held


def _scenario(fleet, tmp_path, mode):
    """Check, drained, drained again, open, open again: what each step said and what the servers had."""
    tag = "dr" + uuid.uuid4().hex[:6]
    names = _names(tag)
    windows = _windows(fleet, tag)
    for window in windows.values():
        window.create()
    held = {}
    try:
        directory = str(tmp_path / mode)
        os.makedirs(directory, exist_ok=True)
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_run_on=mode))
        held = _hold(fleet, tag)
        before = {host: window.catalog() for host, window in windows.items()}
        steps = {}
        trail_counts = {}
        for step, check, state in (
            ("check", True, "drained"),
            ("drained", False, "drained"),
            ("again", False, "drained"),
            ("open", False, "open"),
            ("reopen", False, "open"),
        ):
            run = run_playbook(
                DRAIN, inventory=inventory, check=check, diff=check, extra_vars={"dbhygiene_drain_state": state}
            )
            assert run.rc == 0, run.output[-6000:]
            latest = "drain-check-latest" if check else "drain-latest"  # a dry run never replaces the real one's
            report = read_json(os.path.join(directory, "reports", latest + ".json"))
            markdown = open(os.path.join(directory, "reports", latest + ".md")).read()
            steps[step] = {
                "results": _results(run),
                "report": report,
                "markdown": markdown,
                "catalog": {host: window.catalog() for host, window in windows.items()},
                "connect": {
                    host: {
                        who: window.can_connect(names[who], names[db])
                        for who, db in (("app", "billing"), ("migrator", "billing"), ("clerk", "ledger"))
                    }
                    for host, window in windows.items()
                },
                "alive": {key: session.alive() for key, session in held.items()},
            }
            trail_counts[step] = len(read_trail(os.path.join(directory, "audit.jsonl")))
        trail = read_trail(os.path.join(directory, "audit.jsonl"))
        return {
            "tag": tag,
            "ids": {key: session.id for key, session in held.items()},
            "names": names,
            "before": before,
            "steps": steps,
            "trail": trail,
            "full_trail": read_trail(os.path.join(directory, "audit.jsonl"), ending=True),
            "trail_counts": trail_counts,
            "outcomes": {
                step: {host: _outcome(result, tag) for host, result in data["results"].items()}
                for step, data in steps.items()
            },
        }
    finally:
        close_all(held.values())
        for window in windows.values():
            window.drop()


@pytest.fixture(scope="module")
def both_modes(fleet, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("drain")
    return {mode: _scenario(fleet, tmp_path, mode) for mode in MODES}


def test_check_mode_changes_nothing_and_says_what_would(both_modes):
    for mode, scenario in both_modes.items():
        step = scenario["steps"]["check"]
        assert step["catalog"] == scenario["before"], mode
        assert all(step["alive"].values()), (mode, step["alive"])
        assert all(all(row.values()) for row in step["connect"].values()), (mode, step["connect"])
        for host in HOSTS:
            result = step["results"][host]
            assert result["changed"] is True, (mode, host, result)
            assert result["changes"], (mode, host)
            ended = {e["id"] for bucket in ("terminated", "cancelled") for e in result[bucket]}
            assert ended == {scenario["ids"][(host, "app-idle")], scenario["ids"][(host, "app-busy")]}, (mode, host)
        assert step["report"]["check_mode"] is True
        assert "check mode: nothing was changed" in step["markdown"]
        lines = scenario["trail"][: scenario["trail_counts"]["check"]]
        assert lines and all(line["check_mode"] is True for line in lines), lines
        assert all(line["outcome"].startswith("would_") for line in lines if line["outcome"] != "not_ended")


def test_drained_refuses_logins_and_ends_the_sessions_but_the_allowed(both_modes):
    for mode, scenario in both_modes.items():
        step = scenario["steps"]["drained"]
        for host in HOSTS:
            assert step["connect"][host] == {"app": False, "migrator": True, "clerk": True}, (mode, host)
            assert not step["alive"][(host, "app-idle")], (mode, host)
            assert step["alive"][(host, "migrator")] and step["alive"][(host, "clerk")], (mode, host)
            result = step["results"][host]
            assert result["changed"] is True and result["closed"] == [scenario["names"]["billing"]]
            assert ("%s_migrator" % scenario["tag"], "protected") in [
                (e["user"], e["reason"]) for e in result["not_ended"]
            ], result["not_ended"]
        assert step["catalog"] != scenario["before"], mode


def test_drained_twice_changes_nothing_more_and_open_restores_the_catalog_exactly(both_modes):
    for mode, scenario in both_modes.items():
        again = scenario["steps"]["again"]
        for host in HOSTS:
            assert again["results"][host]["changed"] is False, (mode, host, again["results"][host])
            assert again["results"][host]["changes"] == []
            assert again["results"][host]["closed"] == [scenario["names"]["billing"]]
        opened = scenario["steps"]["open"]
        assert opened["catalog"] == scenario["before"], mode
        for host in HOSTS:
            assert opened["connect"][host] == {"app": True, "migrator": True, "clerk": True}, (mode, host)
            result = opened["results"][host]
            assert result["changed"] is True and result["closed"] == []
            assert {c["change"] for c in result["changes"]} <= {"granted", "revoked", "unlocked"}, result["changes"]
        reopen = scenario["steps"]["reopen"]
        assert reopen["catalog"] == scenario["before"], mode
        for host in HOSTS:
            assert reopen["results"][host]["changed"] is False and reopen["results"][host]["changes"] == []


def test_the_report_shows_what_was_closed_ended_and_is_still_closed(both_modes):
    scenario = both_modes["controller"]
    billing = scenario["names"]["billing"]
    drained = scenario["steps"]["drained"]["report"]
    assert drained["kind"] == "drain" and drained["check_mode"] is False
    assert drained["totals"]["ok"] == len(HOSTS) and drained["totals"]["failed"] == 0
    assert drained["totals"]["hosts_still_closed"] == len(HOSTS)
    for host in HOSTS:
        entry = drained["hosts"][host]
        result = scenario["steps"]["drained"]["results"][host]
        assert entry["status"] == "ok" and entry["state"] == "drained"
        assert entry["still_closed"] == [billing]
        assert len(entry["changes"]) == len(result["changes"])
        assert {e["id"] for e in entry["terminated"] + entry["cancelled"]} == {
            e["id"] for e in result["terminated"] + result["cancelled"]
        }
    markdown = scenario["steps"]["drained"]["markdown"]
    assert "## Rights changed" in markdown and "## Sessions ended" in markdown
    assert "| pg1 | postgresql | ok | drained | %s |" % billing in markdown
    assert "%d hosts still closed" % len(HOSTS) in markdown
    opened = scenario["steps"]["open"]["report"]
    assert opened["totals"]["hosts_still_closed"] == 0
    assert all(entry["still_closed"] == [] for entry in opened["hosts"].values())
    assert "| nothing |" in scenario["steps"]["open"]["markdown"]


def test_every_change_is_a_trail_line(both_modes):
    for mode, scenario in both_modes.items():
        counts = scenario["trail_counts"]
        trail = scenario["trail"]
        steps = (("check", 0), ("drained", counts["check"]), ("again", counts["drained"]), ("open", counts["again"]))
        for step, start in steps:
            end = counts[step]
            lines = trail[start:end]
            results = scenario["steps"][step]["results"]
            expected_changes = sum(len(results[h]["changes"]) for h in HOSTS)
            expected_ended = sum(len(results[h]["terminated"]) + len(results[h]["cancelled"]) for h in HOSTS)
            changes = [line for line in lines if line["action"] in ("revoke", "grant", "lock", "unlock")]
            change_lines = [line for line in changes if line["outcome"] != "changing"]
            # written ahead (issue 19): each change of a real run has its `changing` line before its outcome
            for n, line in enumerate(changes):
                if line["outcome"] != "changing" and step != "check":
                    same = ("run_id", "host", "change", "account", "grantor")
                    ahead = [
                        a for a in changes[:n] if a["outcome"] == "changing" and all(a[k] == line[k] for k in same)
                    ]
                    assert len(ahead) == 1, (mode, step, line)
            assert len(changes) == 2 * len(change_lines) or step == "check", (mode, step, lines)
            # and each session a real drain ended has its `ending` line before its outcome (one per session)
            full = scenario["full_trail"]
            for line in lines:
                if line["outcome"] in ("terminated", "cancelled") and step != "check":
                    ahead = [
                        a
                        for a in full[: full.index(line)]
                        if a["outcome"] == "ending" and all(a[k] == line[k] for k in ("run_id", "host", "key"))
                    ]
                    assert len(ahead) == 1, (mode, step, line)
            ended_lines = [
                line
                for line in lines
                if line["outcome"] in ("terminated", "cancelled", "would_terminate", "would_cancel")
            ]
            assert len(change_lines) == expected_changes, (mode, step, lines)
            assert len(ended_lines) == expected_ended, (mode, step, lines)
            for line in lines:
                assert line["policy"] == "drain" and line["host"] in HOSTS
                assert line["check_mode"] is (step == "check")
                assert line["drain_state"] == ("open" if step == "open" else "drained")
                for key in ("time", "engine", "rule", "action", "outcome", "job_id"):
                    assert key in line, (key, line)
        drained = [line for line in trail[counts["check"] : counts["drained"]] if line["outcome"] != "changing"]
        assert {line["outcome"] for line in drained if line["engine"] == "postgresql" and "account" in line} <= {
            "revoked",
            "granted",
        }
        assert {line["outcome"] for line in drained if line["engine"] == "mysql" and "account" in line} == {"locked"}
        assert counts["again"] == counts["drained"], "a second drain changed nothing, so it wrote no line"


def test_run_on_controller_and_host_give_the_same_result(both_modes):
    controller, host = both_modes["controller"], both_modes["host"]
    for step in controller["outcomes"]:
        for name in HOSTS:
            mine, theirs = controller["outcomes"][step][name], host["outcomes"][step][name]
            for key in sorted(set(mine) | set(theirs)):
                assert mine.get(key) == theirs.get(key), (step, name, key, mine.get(key), theirs.get(key))

    def trail(scenario):
        return sorted(json.dumps(_stable(line, scenario["tag"]), sort_keys=True) for line in scenario["trail"])

    assert trail(controller) == trail(host)


def test_a_bad_variable_fails_before_any_host_is_contacted(fleet, tmp_path):
    for name, value, shown in (
        ("dbhygiene_drain_databases", [], "at least one database is required"),
        ("dbhygiene_drain_grace", "soon", "'soon'"),
        ("dbhygiene_drain_state", "closed", "closed"),
    ):
        directory = tmp_path / name
        directory.mkdir()
        group_vars = _group_vars(fleet, str(directory), "never")
        group_vars[name] = value
        inventory = _inventory(fleet, str(directory), group_vars, down_host=True)
        run = run_playbook(DRAIN, inventory=inventory)
        assert run.rc != 0
        output = " ".join(run.output.split())
        assert "no host was contacted" in output and name in output and shown in output, output[-3000:]
        assert not _results(run), "the per-host task ran"
        assert DOWN_HOST["ansible_host"] not in run.output
        # The run's report says why it stopped: no older report looks current.
        report = read_json(str(directory / "reports" / "drain-latest.json"))
        assert name in report["stopped"] and set(report["failed_host_reasons"].values()) == {"stopped"}


def test_a_down_host_fails_alone_and_the_report_names_it(fleet, tmp_path):
    tag = "dr" + uuid.uuid4().hex[:6]
    windows = _windows(fleet, tag)
    window = windows["pg1"].create()
    try:
        before = window.catalog()
        inventory = _inventory(
            fleet, str(tmp_path), _group_vars(fleet, str(tmp_path), tag), hosts=("pg1",), down_host=True
        )
        run = run_playbook(DRAIN, inventory=inventory, check=True)
        assert run.rc != 0
        report = read_json(str(tmp_path / "reports" / "drain-check-latest.json"))
        assert report["failed_host_reasons"] == {"pgdown": "unreachable"}, report["failed_hosts"]
        assert report["hosts"]["pg1"]["status"] == "ok" and report["hosts"]["pg1"]["changes"]
        assert report["hosts"]["pgdown"]["still_closed"] is None
        markdown = open(str(tmp_path / "reports" / "drain-check-latest.md")).read()
        assert "**pgdown** (unreachable" in markdown and "| pgdown | postgresql | failed |" in markdown
        assert window.catalog() == before  # check mode
    finally:
        window.drop()


def test_the_session_drain_examples_run_as_written(fleet, tmp_path):
    window = Window(fleet, "pg2", ("billing",), ("migrator",), {}).create()
    try:
        before = window.catalog()
        inventory = {
            "all": {
                "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                "hosts": {
                    "pg2": {
                        "ansible_host": fleet.server("pg2")["host"],
                        "db_admin_user": "fleet_admin",
                        "vault_db_admin_password": admin_password(fleet),
                    }
                },
            }
        }
        playbook = [{"hosts": "pg2", "gather_facts": False, "tasks": yaml.safe_load(session_drain.EXAMPLES)}]
        (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (tmp_path / "examples.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
        home = tmp_path / "home"
        home.mkdir()
        run = run_playbook(
            str(tmp_path / "examples.yml"), inventory=str(tmp_path / "inventory.yml"), env={"HOME": str(home)}
        )
        assert run.rc == 0, run.output[-4000:]
        ran = [r for r in run.results if r["action"].endswith("session_drain")]
        assert [r["result"].get("state") for r in ran] == ["drained", "open"], [r["result"] for r in ran]
        assert ran[0]["result"]["changed"] is True
        assert window.catalog() == before
        assert read_trail(str(home / "dbhygiene" / "audit.jsonl"))
    finally:
        window.drop()


# ---------------------------------------------------------------- half-way failures (issue 19)
def _run_drain(inventory, directory, **extra_vars):
    run = run_playbook(DRAIN, inventory=inventory, extra_vars=extra_vars)
    report = read_json(os.path.join(directory, "reports", "drain-latest.json"))
    markdown = open(os.path.join(directory, "reports", "drain-latest.md")).read()
    return run, report, markdown


def _split_changes(entry):
    changes = entry.get("changes") or []
    return [c for c in changes if c.get("status") != "unknown"], [c for c in changes if c.get("status") == "unknown"]


class _FreezeAfterLocks(object):
    """Stop the MariaDB server (SIGSTOP) as soon as `count` accounts named `prefix`* are locked;
    always resumed (on exit, and by a watchdog should this process die first)."""

    def __init__(self, fleet, host, prefix, count):
        from dbfleet import mariadb

        self.server = fleet.server(host)
        self.pid = mariadb.running_pid(self.server)
        self.prefix, self.count = prefix, count
        self.frozen_at = None
        self.conn = mariadb.admin_connect(self.server)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.watchdog = None

    def locked(self, conn=None):
        cur = (conn or self.conn).cursor()
        cur.execute(
            "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE %s "
            "AND JSON_VALUE(Priv, '$.account_locked') IN ('true', '1')",
            (self.prefix + "%",),
        )
        return int(cur.fetchone()[0])

    def _watch(self):
        while not self.stop.is_set():
            locked = self.locked()
            if locked >= self.count:
                os.kill(self.pid, signal.SIGSTOP)
                self.frozen_at = locked
                return

    def __enter__(self):
        self.watchdog = subprocess.Popen(
            ["sh", "-c", "sleep 90; kill -CONT %d" % self.pid],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        os.kill(self.pid, signal.SIGCONT)
        os.killpg(self.watchdog.pid, signal.SIGTERM)
        self.watchdog.wait()
        self.conn.close()


def test_a_mariadb_drain_frozen_half_way_reports_and_trails_what_it_changed(fleet, tmp_path):
    tag = "hf" + uuid.uuid4().hex[:6]
    names = _names(tag)
    users = [names["app"] + str(n) for n in range(10)] + [names["migrator"]]
    window = Window(fleet, "mariadb1", (names["billing"],), users, {user: [names["billing"]] for user in users})
    window.create()
    try:
        before = window.catalog()
        directory = str(tmp_path)
        inventory = _inventory(
            fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_query_timeout=3), hosts=("mariadb1",)
        )
        with _FreezeAfterLocks(fleet, "mariadb1", tag, 4) as freeze:
            run, report, markdown = _run_drain(inventory, directory)
        assert freeze.frozen_at is not None, "the drain ended before the freeze"
        assert run.rc != 0
        check = _FreezeAfterLocks.locked(freeze, conn=window._admin())  # the truth, after the thaw
        entry = report["hosts"]["mariadb1"]
        done, unknown = _split_changes(entry)
        # Every lock the server made before the freeze is reported: done, or unknown when its reply was
        # still in flight (the watcher can see a lock committed before the drain reads its OK).
        assert entry["status"] == "failed" and len(unknown) <= 1, entry
        assert len(done) + len(unknown) >= freeze.frozen_at >= 4, (freeze.frozen_at, done, unknown)
        assert check in (len(done), len(done) + len(unknown)), (check, done, unknown)
        assert names["billing"] in entry["still_closed"] and entry["state_unknown"] is True
        message = " ".join(report["failed_hosts"]["mariadb1"].split())
        assert f"after {len(done)} rights changed" in message and "still closed / state unknown" in message
        assert f"{len(done)} rights changed" in markdown and "1 hosts still closed" in markdown
        assert f"{names['billing']} still closed / state unknown" in message
        assert "0 rights changed" not in markdown and "0 hosts still closed" not in markdown
        trail = read_trail(os.path.join(directory, "audit.jsonl"))
        locks = [line for line in trail if line["action"] == "lock" and line["outcome"] in ("locked", "unknown")]
        never_sent = [line for line in trail if line["action"] == "lock" and line["outcome"] == "not_changed"]
        # written ahead: every lock the server made has its `changing` line (all of the run's, before the first)
        ahead = {line["account"] for line in trail if line["action"] == "lock" and line["outcome"] == "changing"}
        assert {line["account"] for line in locks} <= ahead and len(ahead) >= check
        assert {line["account"] for line in never_sent} == ahead - {line["account"] for line in locks}
        assert sorted(line["outcome"] for line in locks) == sorted(["locked"] * len(done) + ["unknown"] * len(unknown))
        assert {line["account"] for line in locks} == {c["account"] for c in done + unknown}
        print(f"\nfrozen after {len(done)} locks ({len(unknown)} in flight); {check} locked on the server")

        held_locks = window.locked_accounts()  # what the server holds after the thaw

        run, report, markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-4000:]
        assert window.catalog() == before
        assert names["billing"] not in report["hosts"]["mariadb1"]["still_closed"]
        # The open settles each lock left unknown exactly, from what the server held at its first read.
        first_run = trail[0]["run_id"]
        settles = [line for line in read_trail(os.path.join(directory, "audit.jsonl")) if line.get("settles")]
        assert sorted((line["account"], line["outcome"]) for line in settles if line["settles"] == first_run) == sorted(
            (c["account"], "locked" if c["account"] in held_locks else "not_changed") for c in unknown
        )
    finally:
        window.drop()
        _forget_mariadb_record(window, names["billing"])


def test_a_mariadb_lock_recorded_but_never_confirmed_is_settled_by_what_the_server_holds(fleet, tmp_path):
    """A drain that died between recording a lock (`status: pending`) and confirming it leaves
    the lock made or not; the next run reads the account's lock with the record and settles
    each change exactly (`locked` / `not_changed`), never `unknown`. The state such a run
    leaves is made here from a real drain's: its record rows set back to pending, one of the
    two locks undone, and its `changing` lines in the pending file."""
    tag = "pc" + uuid.uuid4().hex[:6]
    names = _names(tag)
    users = [names["app"] + str(n) for n in range(3)] + [names["migrator"]]
    window = Window(fleet, "mariadb1", (names["billing"],), users, {user: [names["billing"]] for user in users})
    window.create()
    try:
        before_locks = window.locked_accounts()
        directory = str(tmp_path)
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag), hosts=("mariadb1",))
        run, _report, _markdown = _run_drain(inventory, directory)
        assert run.rc == 0, run.output[-4000:]
        audit_log = os.path.join(directory, "audit.jsonl")
        made, not_made = ("'%s'@'%%'" % user for user in users[:2])
        changing = [
            line
            for line in read_trail(audit_log)
            if line["action"] == "lock" and line["outcome"] == "changing" and line["account"] in (made, not_made)
        ]
        assert len(changing) == 2, changing
        conn = window._admin()
        try:
            cur = conn.cursor()
            cur.execute(
                "UPDATE dbhygiene.drain_accounts SET status = 'pending' WHERE db = %s AND host = '%%' "
                "AND user IN (%s, %s)",
                (names["billing"], users[0], users[1]),
            )
            cur.execute("ALTER USER %s@'%%' ACCOUNT UNLOCK", (users[1],))
            conn.commit()
        finally:
            conn.close()
        pending = os.path.join(directory, "audit.jsonl.pending", "drain", "mariadb1.json")
        os.makedirs(os.path.dirname(pending), exist_ok=True)
        with open(pending, "w") as handle:
            json.dump({"host": "mariadb1", "pending": changing}, handle)

        run, report, _markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-4000:]
        settles = [line for line in read_trail(audit_log) if line.get("settles")]
        assert sorted((line["account"], line["outcome"]) for line in settles) == sorted(
            [(made, "locked"), (not_made, "not_changed")]
        ), settles
        assert all("at the next run's first read" in line["detail"] for line in settles), settles
        assert not os.path.exists(pending)
        # The open unlocked what the drain locked (the account unlocked by hand changed bytes of its own).
        assert not window.locked_accounts() and not before_locks
        assert names["billing"] not in report["hosts"]["mariadb1"]["still_closed"]
    finally:
        window.drop()
        _forget_mariadb_record(window, names["billing"])


def _forget_mariadb_record(window, database):
    """The server-wide record of a test's database, should the test have failed before its open."""
    conn = window._admin()
    try:
        cur = conn.cursor()
        cur.execute("SHOW TABLES FROM dbhygiene LIKE 'drain%%'")
        for (table,) in cur.fetchall():
            cur.execute("DELETE FROM dbhygiene.`%s` WHERE db = %%s" % table, (database,))
        conn.commit()
    finally:
        conn.close()


def test_a_postgresql_drain_that_times_out_half_way_and_an_open_with_another_login_db(fleet, tmp_path):
    tag = "hf" + uuid.uuid4().hex[:6]
    names = _names(tag)
    window = _windows(fleet, tag)["pg1"]
    window.create()
    admin = None
    try:
        before = window.catalog()
        directory = str(tmp_path)
        inventory = _inventory(
            fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_query_timeout=3), hosts=("pg1",)
        )
        run, report, _markdown = _run_drain(inventory, directory)
        assert run.rc == 0, run.output[-4000:]

        # open logged in to another database: the record is not there; it fails naming where it is
        run, report, markdown = _run_drain(
            inventory, directory, dbhygiene_drain_state="open", dbhygiene_login_db=names["ledger"]
        )
        assert run.rc != 0
        message = " ".join(report["failed_hosts"]["pg1"].split())
        assert "in database 'postgres'" in message and "login_db" in message, message
        assert report["hosts"]["pg1"]["still_closed"] == [names["billing"]]
        assert "1 hosts still closed" in markdown and "0 hosts still closed" not in markdown
        assert not window.can_connect(names["app"], names["billing"])

        # someone grants CONNECT during the window; the next drain's transaction waits on the record's
        # row (held FOR UPDATE) until query_timeout: its change is in flight, made or not
        window._run(
            [
                (
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                        *map(sql.Identifier, (names["billing"], names["app"]))
                    ),
                    None,
                )
            ]
        )
        admin = postgres.admin_connect(fleet.server("pg1"))
        admin.cursor().execute("SELECT * FROM dbhygiene.drain WHERE database = %s FOR UPDATE", (names["billing"],))
        run, report, markdown = _run_drain(inventory, directory)
        admin.rollback()
        assert run.rc != 0
        entry = report["hosts"]["pg1"]
        done, unknown = _split_changes(entry)
        assert done == [] and [(c["account"], c["change"]) for c in unknown] == [(names["app"], "revoked")]
        assert entry["still_closed"] == [names["billing"]] and entry["state_unknown"] is True
        assert "1 more sent when a host failed" in markdown and "1 hosts still closed" in markdown
        trail = read_trail(os.path.join(directory, "audit.jsonl"))
        assert [(line["account"], line["outcome"]) for line in trail if line["outcome"] == "unknown"] == [
            (names["app"], "unknown")
        ]
        # the transaction was rolled back: the grant is still there; its maker takes it back
        assert window.can_connect(names["app"], names["billing"])
        window._run(
            [
                (
                    sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                        *map(sql.Identifier, (names["billing"], names["app"]))
                    ),
                    None,
                )
            ]
        )

        run, report, _markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-4000:]
        assert report["hosts"]["pg1"]["restored"][0]["exact"] is True
        assert window.catalog() == before
    finally:
        if admin is not None:
            admin.close()
        window.drop()
