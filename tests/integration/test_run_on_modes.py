# -*- coding: utf-8 -*-
"""dbhygiene_run_on controller (in process) and host (the module) on the same
scenarios, compared: the same sessions ended, cancelled and not ended (with
their rules and reasons), the same trail lines (time, job and session identity
aside) and the same report shape; check mode and diff alike. The controller
mode runs no module process; without the driver it fails naming the interpreter
and the pip command."""

import json
import os
import sys
import time

import pytest
from _roles_fixtures import (
    AUDIT,
    ENFORCE,
    close_all,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    write_inventory,
)
from conftest import ROOT, run_module, run_playbook

HOSTS = ("pg1", "mariadb1")
MODES = ("controller", "host")
# Planted on every host: (name, state). ghost is ended, keep protected, poke matched by a
# cancel rule while idle (nothing to cancel), web matched by no rule.
PLANTED = (("ghost", "idle"), ("keep", "idle"), ("poke", "idle"), ("web", "idle"))
# Trail fields that name this run or these very sessions, not the decision.
VOLATILE = {
    "time",
    "job_id",
    "sweep_id",
    "run_id",
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
}


def _policy(tag):
    return {
        "name": "modes-" + tag,
        "rules": [
            {
                "name": "ghost",
                "states": ["idle"],
                "applications": [tag + "-ghost", tag + "-keep"],
                "idle_longer_than": 1,
            },
            {
                "name": "poke",
                "states": ["idle"],
                "applications": [tag + "-poke"],
                "idle_longer_than": 1,
                "action": "cancel",
            },
        ],
        "protect": {"applications": [tag + "-keep"]},
        # The test's sessions may be every client session of a quiet server: no share limit.
        "limits": {"max_fraction": "unlimited"},
    }


def _group_vars(directory, tag, mode):
    return {
        "dbhygiene_policy": _policy(tag),
        "dbhygiene_run_on": mode,
        "dbhygiene_report_dir": os.path.join(directory, "reports"),
        "dbhygiene_audit_log": os.path.join(directory, "audit.jsonl"),
    }


ENFORCE_TASK = "End the sessions the policy targets"
AUDIT_TASK = "Take a session snapshot and plan the policy on it"


def _result(run, host, task):
    """The registered result of the role task named `task` on `host`."""
    found = [r for r in run.results if r["host"] == host and r["task"].endswith(task)]
    assert found, (host, task, run.output[-3000:])
    return found[-1]["result"]


def _app(entry, tag):
    """The planted name of a session (its application without the tag)."""
    return (entry.get("application") or "")[len(tag) + 1 :]


def _stable(value, tag):
    """`value` with the tag replaced and the fields that name these very sessions dropped."""
    if isinstance(value, dict):
        return {k: _stable(v, tag) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v, tag) for v in value]
    if isinstance(value, str):
        return value.replace(tag, "TAG")
    return value


def _outcome(result, tag):
    """What a host's enforce result says, without the identity of these sessions."""
    outcome = {
        "changed": result.get("changed"),
        "terminated": sorted((_app(e, tag), e["rule"], e["action"]) for e in result.get("terminated") or []),
        "cancelled": sorted((_app(e, tag), e["rule"], e["action"]) for e in result.get("cancelled") or []),
        "not_ended": sorted((_app(e, tag), e["rule"], e["reason"]) for e in result.get("not_ended") or []),
        "summary": result.get("summary"),
        "queries": result.get("queries"),
        "policy": result.get("policy"),
        "diff": result.get("diff", {}).get("before", "").splitlines()[:1] if result.get("diff") else None,
        "dbhygiene": {k: v for k, v in (result.get("dbhygiene") or {}).items() if k not in ("duration",)},
    }
    return _stable(outcome, tag)


def _trail(lines, tag):
    stable = [json.dumps(_stable(line, tag), sort_keys=True) for line in lines]
    return sorted(stable), sorted(set(k for line in lines for k in line))


def _shape(value):
    """The structure of a report: keys and types, not values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _enforce(fleet, directory, tag, mode, check, verbosity=0):
    os.makedirs(directory, exist_ok=True)
    inventory = write_inventory(fleet, directory, _group_vars(directory, tag, mode), hosts=HOSTS)
    run = run_playbook(ENFORCE, inventory=inventory, check=check, diff=check, verbosity=verbosity)
    assert run.rc == 0, run.output
    results = {h: _result(run, h, ENFORCE_TASK) for h in HOSTS}
    return run, results


def _scenario(fleet, tmp_path, mode):
    """Plant, dry run, real run, second dry run: what each step said, and what the server kept."""
    tag = new_tag("modes")
    held = open_sessions(fleet, [(h, kind, "%s-%s" % (tag, name)) for h in HOSTS for name, kind in PLANTED])
    try:
        time.sleep(1.5)
        directory = str(tmp_path / mode)
        steps = {}
        outputs = []
        for step, check in (("check", True), ("real", False), ("again", True)):
            run, results = _enforce(fleet, directory, tag, mode, check, verbosity=3 if step == "real" else 0)
            outputs.append(run.output + json.dumps(run.results))
            steps[step] = {h: _outcome(r, tag) for h, r in results.items()}
        left = {}
        for host in HOSTS:
            live = live_sessions(fleet, host, tag)
            left[host] = sorted(
                _app({"application": s.application}, tag) for s in held if s.id in live and s.server["name"] == host
            )
        trail = read_trail(os.path.join(directory, "audit.jsonl"))
        report = read_json(os.path.join(directory, "reports", "enforce-latest.json"))
        return {
            "steps": steps,
            "left": left,
            "trail": _trail(trail, tag),
            "report": _shape(report),
            "report_hosts": {
                h: {k: v for k, v in e.items() if k in ("status", "ended", "failure")}
                for h, e in report["hosts"].items()
            },
            "outputs": outputs,
        }
    finally:
        close_all(held)


@pytest.fixture(scope="module")
def both_modes(fleet, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("run_on")
    return {mode: _scenario(fleet, tmp_path, mode) for mode in MODES}


def test_the_scenario_does_what_the_policy_says(both_modes):
    for mode in MODES:
        steps = both_modes[mode]["steps"]
        for host in HOSTS:
            for step in ("check", "real"):
                outcome = steps[step][host]
                assert outcome["terminated"] == [("ghost", "ghost", "terminate")], (mode, step, host)
                assert outcome["cancelled"] == []
                assert outcome["not_ended"] == [("keep", "ghost", "protected"), ("poke", "poke", "nothing_to_cancel")]
                assert outcome["changed"] is True
            assert steps["again"][host]["terminated"] == [] and steps["again"][host]["changed"] is False
            assert steps["check"][host]["diff"] and steps["real"][host]["diff"] is None
            assert both_modes[mode]["left"][host] == ["keep", "poke", "web"]


def test_results_are_the_same_in_both_modes(both_modes):
    controller, host = both_modes["controller"], both_modes["host"]
    assert controller["steps"] == host["steps"]
    assert controller["left"] == host["left"]


def test_trail_is_the_same_in_both_modes(both_modes):
    controller, host = both_modes["controller"]["trail"], both_modes["host"]["trail"]
    assert controller == host
    lines, keys = controller
    # Per host: the ghost and the poke (not_ended) lines of the dry and the real run, then the poke alone.
    assert len(lines) == 5 * len(HOSTS)
    assert "password" not in " ".join(keys)


def test_report_is_the_same_in_both_modes(both_modes):
    assert both_modes["controller"]["report"] == both_modes["host"]["report"]
    assert both_modes["controller"]["report_hosts"] == both_modes["host"]["report_hosts"]


def test_controller_mode_runs_no_module_and_no_secret_shows(fleet, both_modes):
    password = fleet.password("hygiene")
    controller, host = both_modes["controller"]["outputs"], both_modes["host"]["outputs"]
    # At -vvv the module path shows its AnsiballZ payload being put and run; in process there is none.
    assert "AnsiballZ_postgresql_sessions" not in controller[1] and "AnsiballZ_mysql_sessions" not in controller[1]
    assert "AnsiballZ_postgresql_sessions" in host[1] and "AnsiballZ_mysql_sessions" in host[1]
    assert not [text for text in controller + host if password in text]


def _audit(fleet, directory, tag, mode, check):
    os.makedirs(directory, exist_ok=True)
    inventory = write_inventory(fleet, directory, _group_vars(directory, tag, mode), hosts=HOSTS)
    run = run_playbook(AUDIT, inventory=inventory, check=check)
    assert run.rc == 0, run.output
    report = read_json(os.path.join(directory, "reports", "audit-latest.json"))
    return {h: _result(run, h, AUDIT_TASK)["dbhygiene"] for h in HOSTS}, report


def _stable_audit(figures, tag):
    """An audit host's figures with only what this scenario fixes (its tagged sessions)."""
    text = json.dumps(figures, sort_keys=True, default=str)
    kept = {}
    for key, value in json.loads(text).items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if tag in str(k)}
        if key in ("policy", "would_end", "protected", "limit_error", "by_application", "engine", "breaches"):
            kept[key] = value
    return _stable(kept, tag)


@pytest.mark.parametrize("check", [False, True])
def test_audit_is_the_same_in_both_modes_and_plans_once(fleet, tmp_path, check):
    tag = new_tag("modes")
    held = open_sessions(fleet, [(h, kind, "%s-%s" % (tag, name)) for h in HOSTS for name, kind in PLANTED])
    try:
        time.sleep(1.5)
        seen = {}
        for mode in MODES:
            figures, report = _audit(fleet, str(tmp_path / mode), tag, mode, check)
            seen[mode] = ({h: _stable_audit(f, tag) for h, f in figures.items()}, _shape(report))
        assert seen["controller"] == seen["host"]
        for host in HOSTS:
            figures = seen["controller"][0][host]
            assert figures["by_application"] == {tag + "-" + name: 1 for name, _kind in PLANTED}
            assert figures["protected"] == 1
        # Read only: every planted session is still there.
        for host in HOSTS:
            assert len(live_sessions(fleet, host, tag)) == len(PLANTED)
    finally:
        close_all(held)


def test_controller_mode_without_the_driver_names_the_interpreter_and_pip(fleet, tmp_path):
    # A package of the same name first on the path that fails to import: the controller's
    # Python then lacks psycopg2 as a controller without it would.
    shadow = tmp_path / "shadow" / "psycopg2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('psycopg2 is hidden by the test')\n")
    tag = new_tag("modes")
    inventory = write_inventory(fleet, tmp_path, _group_vars(str(tmp_path), tag, "controller"), hosts=HOSTS)
    run = run_playbook(
        ENFORCE,
        inventory=inventory,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.path.join(ROOT, "tools")])},
    )
    assert run.rc != 0
    failed = _result(run, "pg1", ENFORCE_TASK)
    assert [r["status"] for r in run.results if r["host"] == "pg1" and r["task"].endswith(ENFORCE_TASK)] == ["failed"]
    assert sys.executable in failed["msg"] and "-m pip install psycopg2" in failed["msg"]
    assert "dbhygiene_run_on" in failed["msg"]
    # The MariaDB host, whose driver is there, is enforced all the same.
    done = _result(run, "mariadb1", ENFORCE_TASK)
    assert not done.get("failed")


def test_role_arguments_are_validated_once_for_the_play_before_any_host(fleet, tmp_path):
    tag = new_tag("modes")
    group_vars = _group_vars(str(tmp_path), tag, "controller")
    group_vars["dbhygiene_run_on"] = "elsewhere"
    inventory = write_inventory(fleet, tmp_path, group_vars, hosts=HOSTS)
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    assert "dbhygiene_run_on" in run.output and "elsewhere" in run.output
    assert "hosts pg1, mariadb1" in run.output or "hosts mariadb1, pg1" in run.output
    assert "no host was contacted" in run.output
    assert not [r for r in run.results if r["task"].endswith(ENFORCE_TASK)]


@pytest.mark.parametrize("playbook", [ENFORCE, AUDIT])
def test_one_task_per_host(fleet, tmp_path, playbook):
    """Ansible's per-host role validation is not run: the run-once check did it."""
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(str(tmp_path), new_tag("modes"), "controller"), hosts=HOSTS
    )
    run = run_playbook(playbook, inventory=inventory, check=True)
    assert run.rc == 0, run.output
    for host in HOSTS:
        per_host = [r["task"] for r in run.results if r["host"] == host]
        # the run-once check and report are recorded under the first host only
        assert len([t for t in per_host if "Validating arguments" in t]) == 0, per_host
        assert len([t for t in per_host if t.endswith((ENFORCE_TASK, AUDIT_TASK))]) == 1, per_host


def test_info_module_plans_the_policy_on_its_own_listing(fleet):
    tag = new_tag("modes")
    held = open_sessions(fleet, [("pg1", "idle", tag + "-ghost"), ("mariadb1", "idle", tag + "-ghost")])
    try:
        time.sleep(1.5)
        for server_name, module in (("pg1", "postgresql_session_info"), ("mariadb1", "mysql_session_info")):
            server = fleet.server(server_name)
            args = {
                "login_host": server["host"],
                "login_port": server["port"],
                "login_user": "hygiene",
                "login_password": fleet.password("hygiene"),
                # Everything idle, our own session included: the plan still leaves ours out.
                "policy": {"name": "all-idle", "rules": [{"name": "any", "states": ["idle", "active"]}]},
            }
            if server["engine"] == "postgresql":
                args["ssl_mode"] = "disable"
            result, _run = run_module("dbhygiene.sessions." + module, args)
            assert not result.get("failed"), result
            plan = result["plan"]
            victims = [v for v in plan["victims"] if v["session"]["application"] == tag + "-ghost"]
            assert len(victims) == 1 and victims[0]["rule"] == "any"
            assert plan["summary"]["victims"] == len(plan["victims"])
            listed = set(s["id"] for s in result["sessions"])
            assert set(v["session"]["id"] for v in plan["victims"]) <= listed
            bad = dict(args, policy={"rules": [{"name": "r", "idle_longer_than": "soon"}]})
            result, _run = run_module("dbhygiene.sessions." + module, bad)
            assert result["failed"] and "idle_longer_than" in result["msg"] and "soon" in result["msg"]
            assert "plan" not in run_module("dbhygiene.sessions." + module, dict(args, policy=None))[0]
    finally:
        close_all(held)
