# -*- coding: utf-8 -*-
"""The write-ahead audit trail under faults, through the enforce playbook on real servers.

- A server frozen (SIGSTOP) the moment the first victim dies (both engines: MariaDB
  ends the victims in one server-side block, PostgreSQL in one statement per batch),
  and PostgreSQL killed (SIGKILL, every process) at that moment: every session that
  died is in the trail as `ending` and then `terminated` or `unknown`; the result and
  the report show the unknown ones with a count (never "0 sessions seen" or
  unreachable); the next run settles each with a line of its own.
- A trail on a tmpfs filled to the last byte (and with one page left, less than the
  lines need: a short write), and a trail on a read-only file system: nothing is
  ended, the host fails naming the path and the error, the file keeps no partial line.

Figures are printed (-s): victims, deaths, and how many of them the trail holds.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from _roles_fixtures import ENFORCE, ROOT, close_all, new_tag, read_json, read_trail, write_inventory
from conftest import run_playbook, wait_until
from dbfleet import faults, holder

TASK = "End the sessions the policy targets"
QUERY_TIMEOUT = 4


def _result(run, host):
    """The host's enforce result (the callback drops `failed`: it comes from the status)."""
    found = [r for r in run.results if r["host"] == host and r["task"].endswith(TASK)]
    assert found, run.output[-3000:]
    return dict(found[-1]["result"], failed=found[-1]["status"] == "failed")


def _policy(tag):
    return {
        "name": "trail-" + tag,
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
        # Up to 150 ghosts, maybe every client session of a quiet server: no default limit.
        "limits": {"max_terminations": "unlimited", "max_fraction": "unlimited"},
    }


def _inventory(fleet, directory, host, tag, audit_log, **extra):
    group_vars = {
        "dbhygiene_policy": _policy(tag),
        "dbhygiene_report_dir": str(directory / "reports"),
        "dbhygiene_audit_log": str(audit_log),
        "dbhygiene_wait_timeout": 5,
        "dbhygiene_connect_timeout": 3,
        "dbhygiene_query_timeout": QUERY_TIMEOUT,
        "dbhygiene_host_timeout": 60,
    }
    group_vars.update(extra)
    return write_inventory(fleet, directory, group_vars, hosts=(host,))


def _ghosts(fleet, host, tag, count):
    held = []
    try:
        for _n in range(count):
            held.append(holder.open_session(fleet, host, "idle", application=tag + "-ghost", seconds=600))
    except Exception:
        close_all(held)
        raise
    time.sleep(1.5)  # idle_longer_than 1
    return held


def _dead(fleet, host, held):
    alive = holder.live(fleet.server(host), [h.id for h in held])
    return [h for h in held if h.id not in alive]


def _by_outcome(lines, run_id=None):
    found = {}
    for line in lines:
        if run_id is None or line.get("run_id") == run_id:
            found.setdefault(line["outcome"], []).append(line)
    return found


RESTART_ATTEMPTS = 10


def _restart(fleet):
    """`dbfleet up` again after a server was killed: the killed server's processes take a moment
    to go (its shared memory and port with them), so `up` is retried, a second apart, until the
    fleet is up again (bounded); the other tests need every server back."""
    argv = [sys.executable, "-m", "dbfleet", "--state-dir", fleet.state_dir, "up"]
    argv += ["--postgres", str(len(fleet.by_engine("postgresql"))), "--mariadb", str(len(fleet.by_engine("mysql")))]
    argv += ["--first", str(fleet.data.get("first", 1))]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"))
    for attempt in range(RESTART_ATTEMPTS):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if proc.returncode == 0:
            return
        time.sleep(1 + attempt)
    raise AssertionError(f"the fleet did not come back after {RESTART_ATTEMPTS} attempts:\n{proc.stdout}{proc.stderr}")


def _mid_kill(fleet, tmp_path, host, count, what, run_on="controller"):
    """Run the enforce playbook on `host` with `count` victims; `what` (freeze / kill) the
    server the moment the first dies. Returns (first run, its result, trail, held, deaths)."""
    tag = new_tag("trail")
    audit_log = tmp_path / "audit.jsonl"
    inventory = _inventory(fleet, tmp_path, host, tag, audit_log, dbhygiene_run_on=run_on)
    held = _ghosts(fleet, host, tag, count)
    watch = faults.at_first_death(fleet, host, held, what)
    try:
        run = run_playbook(ENFORCE, inventory=inventory, timeout=300)
        ended_at = time.monotonic()
    finally:
        watch.done()
    assert watch.fired is not None, "no victim died:\n" + run.output[-3000:]
    if what == "kill":
        _restart(fleet)
    # After the thaw the frozen statement goes on ending sessions: wait until it is done.
    previous = None
    for _n in range(40):
        dead = _dead(fleet, host, held) if what == "freeze" else list(held)
        if previous is not None and len(dead) == len(previous):
            break
        previous = dead
        time.sleep(0.5)
    result = _result(run, host)
    return (
        run,
        result,
        read_trail(str(audit_log), ending=True),
        held,
        dead,
        (ended_at - watch.fired, tag, inventory, audit_log),
    )


def _gone_lines(outcomes):
    """The trail lines of victims already gone when their signal came."""
    return [line for line in outcomes.get("not_ended", []) if line.get("reason") == "gone"]


def _check_every_death_recorded(host, result, trail, dead, what):
    run_id = trail[0]["run_id"]
    outcomes = _by_outcome(trail, run_id)
    ending = set(line["key"] for line in outcomes.get("ending", []))
    settled = set(line["key"] for line in outcomes.get("terminated", []) + outcomes.get("unknown", []))
    # A killed server's backends die on their own: a victim already gone when its signal came is
    # `not_ended: gone` (the server's death ended it, not the run), and still has its lines.
    # (A frozen server ends nothing on its own: there, a death reported gone would be a kill unrecorded.)
    gone = set(line["key"] for line in _gone_lines(outcomes))
    if what != "kill":
        gone = set()
    dead_keys = set()
    for line in outcomes.get("ending", []):
        if line["id"] in set(h.id for h in dead):
            dead_keys.add(line["key"])
    died = set(h.id for h in dead)
    # Every session that died has an `ending` line, then a terminated or unknown one.
    journaled_ids = set(line["id"] for line in outcomes.get("ending", []))
    assert died <= journaled_ids, f"{len(died - journaled_ids)} deaths with no ending line"
    assert dead_keys <= settled | gone
    assert set(e["key"] for e in result.get("unknown") or []) == set(
        line["key"] for line in outcomes.get("unknown", [])
    )
    assert ending >= settled
    return outcomes


def _check_result_and_report(tmp_path, host, result, count):
    assert result["failed"] is True
    unknown = result.get("unknown") or []
    assert unknown, result.get("msg")
    assert result["summary"]["unknown"] == len(unknown)
    assert result["summary"]["seen"] >= count
    assert f"{len(unknown)} sessions whose fate is unknown" in result["msg"]
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    entry = report["hosts"][host]
    assert entry["status"] == "failed" and entry["reason_code"] == "unknown_outcome"
    assert len(entry["unknown"]) == len(unknown) and report["totals"]["unknown"] == len(unknown)
    assert entry["seen"] >= count and report["totals"]["sessions_seen"] >= count
    markdown = open(str(tmp_path / "reports" / "enforce-latest.md")).read()
    assert f"{len(unknown)} whose fate is unknown" in markdown
    assert not re.search(r"\b0 sessions seen", markdown)


def _check_settled_by_the_next_run(fleet, host, first_trail, info, held):
    _took, _tag, inventory, audit_log = info
    first_run = first_trail[0]["run_id"]
    pending = os.path.join(str(audit_log) + ".pending", host + ".json")
    assert os.path.exists(pending)
    unknown = set(line["key"] for line in _by_outcome(first_trail, first_run).get("unknown", []))
    alive = holder.live(fleet.server(host), [h.id for h in held])
    run = run_playbook(ENFORCE, inventory=inventory, timeout=300)
    assert _result(run, host).get("failed") is not True, run.output[-3000:]
    lines = read_trail(str(audit_log), ending=True)[len(first_trail) :]
    settling = [line for line in lines if line.get("settles") == first_run]
    assert sorted(line["key"] for line in settling) == sorted(unknown)
    for line in settling:
        if line["id"] in alive:
            assert (line["outcome"], line["reason"]) == ("not_ended", "still_present")
        else:
            assert line["outcome"] == "terminated" and line["detail"].startswith("settled")
    assert not os.path.exists(pending)
    return settling


def _report_figures(label, count, dead, outcomes, took, settling):
    print(
        f"\n{label}: {count} victims, {len(dead)} died, in the trail: {len(outcomes.get('ending', []))} ending, "
        f"{len(outcomes.get('terminated', []))} terminated, {len(outcomes.get('unknown', []))} unknown; "
        f"the play ended {took:.1f}s after the fault; the next run settled {len(settling)} "
        f"({sum(1 for s in settling if s['outcome'] == 'terminated')} terminated)"
    )


# A fault that lands after the host's run (it finished in the watcher's few ms; on a busy machine
# about 1 attempt in 4) is tried again.
ATTEMPTS = 5


def _fault_case(fleet, tmp_path, host, count, what, run_on, label):
    """One mid-kill fault, tried until it lands while the host's run is still at work."""
    for attempt in range(ATTEMPTS):
        directory = tmp_path / f"try{attempt}"
        directory.mkdir()
        run, result, trail, held, dead, info = _mid_kill(fleet, directory, host, count, what, run_on)
        try:
            assert dead, "the fault came before any death"
            outcomes = _check_every_death_recorded(host, result, trail, dead, what)
            if not result.get("unknown"):
                # The statement had returned: every victim terminated (confirmed, or not when the fault
                # cut the confirm wait), each in the trail. Not the case under test: again.
                assert len(outcomes.get("terminated", [])) + len(_gone_lines(outcomes)) == count
                print(f"\n{label}: attempt {attempt + 1} landed after the signalling statement returned; again")
                continue
            _check_result_and_report(directory, host, result, count)
            settling = _check_settled_by_the_next_run(fleet, host, trail, info, held)
            _report_figures(f"{label} (run_on {run_on})", count, dead, outcomes, info[0], settling)
            return settling
        finally:
            close_all(held)
    pytest.fail(f"{label}: the fault never landed during the run in {ATTEMPTS} attempts")


@pytest.mark.parametrize(
    "host, count, run_on",
    [
        ("pg2", 150, "controller"),
        ("pg2", 150, "host"),
        ("mariadb2", 100, "controller"),
        ("mariadb2", 100, "host"),
    ],
)
def test_a_server_frozen_as_the_first_victim_dies(fleet, tmp_path, host, count, run_on):
    _fault_case(fleet, tmp_path, host, count, "freeze", run_on, f"{host} frozen mid-kill")


def test_postgresql_killed_as_the_first_victim_dies(fleet, tmp_path):
    settling = _fault_case(fleet, tmp_path, "pg3", 150, "kill", "controller", "pg3 killed mid-kill")
    assert all(line["outcome"] == "terminated" for line in settling)  # the server died: all gone


# ------------------------------------------------------------ a trail that cannot be written
def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {done.stderr.strip()}")


def _umount(path):
    subprocess.run(["umount", "-l", path], check=False)


def _fill(directory, leave_pages):
    """Fill the file system of `directory` to the last byte (`leave_pages` pages free)."""
    filler = os.path.join(directory, "filler")
    with open(filler, "wb", buffering=0) as handle:
        for block in (1 << 16, 4096, 1):
            while True:
                try:
                    handle.write(b"\0" * block)
                except OSError:
                    break
    if leave_pages:
        os.truncate(filler, os.path.getsize(filler) - leave_pages * 4096)


@pytest.mark.parametrize("leave_pages", [0, 1])
@pytest.mark.parametrize("host", ["pg1", "mariadb1"])
def test_a_full_trail_file_system_ends_nothing(fleet, tmp_path, host, leave_pages):
    mount = str(tmp_path / "full")
    _mount_tmpfs(mount, "256k")
    held = []
    try:
        trail_path = os.path.join(mount, "audit.jsonl")
        line = {"earlier": "line", "pad": ""}
        line["pad"] = "x" * (8192 - len(json.dumps(line)) - 1)
        with open(trail_path, "w") as handle:  # two pages of whole lines: no room left in its last page
            handle.write(json.dumps(line) + "\n")
        before = open(trail_path, "rb").read()
        _fill(mount, leave_pages)
        tag = new_tag("trail-full")
        inventory = _inventory(fleet, tmp_path, host, tag, trail_path)
        held = _ghosts(fleet, host, tag, 40)  # their ending lines need more than a page
        run = run_playbook(ENFORCE, inventory=inventory, timeout=300)
        result = _result(run, host)
        assert result["failed"] is True
        assert trail_path in result["msg"] and "No space left on device" in result["msg"], result["msg"]
        assert "nothing of this batch (40 sessions) was signalled" in result["msg"]
        assert not result.get("terminated") and not result.get("unknown")
        assert len(_dead(fleet, host, held)) == 0
        assert open(trail_path, "rb").read() == before  # no partial line
        markdown = open(str(tmp_path / "reports" / "enforce-latest.md")).read()
        assert "in the audit trail" not in markdown
    finally:
        close_all(held)
        _umount(mount)


@pytest.mark.parametrize(
    "host, run_on, directory",
    [("pg1", "controller", ""), ("mariadb1", "controller", ""), ("pg1", "host", ""), ("mariadb1", "controller", "new")],
)
def test_a_read_only_trail_ends_nothing(fleet, tmp_path, host, run_on, directory):
    """A read-only trail, or (directory "new") one whose directory cannot be created."""
    mount = str(tmp_path / "ro")
    _mount_tmpfs(mount, "1m")
    held = []
    try:
        trail_path = os.path.join(mount, directory, "audit.jsonl")
        if not directory:
            with open(trail_path, "w") as handle:
                handle.write(json.dumps({"earlier": "line"}) + "\n")
        subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
        tag = new_tag("trail-ro")
        inventory = _inventory(fleet, tmp_path, host, tag, trail_path, dbhygiene_run_on=run_on)
        held = _ghosts(fleet, host, tag, 3)
        run = run_playbook(ENFORCE, inventory=inventory, timeout=300)
        result = _result(run, host)
        assert result["failed"] is True
        named = os.path.dirname(trail_path) if directory else trail_path
        assert named in result["msg"] and "Read-only file system" in result["msg"], result["msg"]
        assert "nothing of this batch (3 sessions) was signalled" in result["msg"]
        assert not result.get("terminated")
        assert len(_dead(fleet, host, held)) == 0
        assert read_trail(trail_path) == ([] if directory else [{"earlier": "line"}])
    finally:
        close_all(held)
        _umount(mount)


def test_run_on_host_journals_the_plan_before_the_real_run(fleet, tmp_path):
    host = "pg1"
    tag = new_tag("trail-host")
    audit_log = tmp_path / "audit.jsonl"
    inventory = _inventory(fleet, tmp_path, host, tag, audit_log, dbhygiene_run_on="host")
    held = _ghosts(fleet, host, tag, 3)
    try:
        run = run_playbook(ENFORCE, inventory=inventory, timeout=300)
        result = _result(run, host)
        assert result.get("failed") is not True, result.get("msg")
        lines = read_trail(str(audit_log), ending=True)
        assert [line["outcome"] for line in lines] == ["ending"] * 3 + ["terminated"] * 3
        assert sorted(line["id"] for line in lines[:3]) == sorted(h.id for h in held)
        assert len(set(line["run_id"] for line in lines)) == 1
        assert not os.path.exists(str(audit_log) + ".pending/" + host + ".json")
        assert wait_until(lambda: len(_dead(fleet, host, held)) == 3)
    finally:
        close_all(held)
