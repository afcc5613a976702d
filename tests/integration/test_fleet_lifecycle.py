# -*- coding: utf-8 -*-
"""dbfleet's own life cycle on a separate, small fleet: up, up again, ping, down."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from conftest import ROOT, run_playbook


def _fleet(state_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "dbfleet", "--state-dir", str(state_dir)] + list(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools")),
    )


def _server_pids(state_dir):
    """Pids of every process whose command line names this fleet's state directory."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmdline and ("postgres" in cmdline or "mariadbd" in cmdline):
            pids.append(int(pid))
    return pids


def test_up_refuses_a_state_dir_the_server_users_cannot_reach(tmp_path):
    if os.geteuid() != 0:
        return
    os.chmod(tmp_path, 0o700)
    result = _fleet(tmp_path / "fleet", "up", "--postgres", "1", "--mariadb", "0", "--first", "190")
    assert result.returncode != 0
    assert "not traversable" in result.stderr and str(tmp_path) in result.stderr


def test_up_twice_ping_and_down_leaves_nothing():
    # Under /tmp itself: pytest's tmp_path is private to root, the server users could not enter it.
    parent = tempfile.mkdtemp(prefix="dbfleet-lifecycle-", dir="/tmp")
    os.chmod(parent, 0o755)
    state_dir = pathlib.Path(parent) / "fleet"
    try:
        first = _fleet(state_dir, "up", "--postgres", "2", "--mariadb", "1", "--first", "180")
        assert first.returncode == 0, first.stdout + first.stderr
        with open(state_dir / "fleet.json") as f:
            servers = json.load(f)["servers"]
        assert [s["host"] for s in servers] == ["127.0.1.180", "127.0.1.181", "127.0.2.180"]
        pids = sorted(_server_pids(state_dir))
        assert len(pids) >= 3

        again = _fleet(state_dir, "up", "--postgres", "2", "--mariadb", "1")
        assert again.returncode == 0, again.stdout + again.stderr
        assert sorted(_server_pids(state_dir)) == pids, "a second up must not restart anything"

        held = _fleet(state_dir, "hold", "--server", "pg1", "--kind", "idle", "--count", "2", "--detach")
        assert held.returncode == 0, held.stdout + held.stderr
        assert len(json.loads(held.stdout)["ids"]) == 2

        run = run_playbook(
            os.path.join(ROOT, "tests", "integration", "playbooks", "ping.yml"),
            inventory=str(state_dir / "inventory.yml"),
        )
        assert run.rc == 0, run.output
        assert sorted(run.stats) == ["mariadb1", "pg1", "pg2"]
        assert all(s["ok"] == 1 for s in run.stats.values())
    finally:
        down = _fleet(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _server_pids(state_dir) == []
    assert not state_dir.exists()
    shutil.rmtree(parent, ignore_errors=True)


def test_up_runs_the_major_asked_and_keeps_a_running_fleet_on_its_own():
    parent = tempfile.mkdtemp(prefix="dbfleet-major-", dir="/tmp")
    os.chmod(parent, 0o755)
    state_dir = pathlib.Path(parent) / "fleet"
    try:
        bad = _fleet(state_dir, "up", "--postgres", "1", "--mariadb", "0", "--first", "190", "--pg-major", "12")
        assert bad.returncode != 0 and "'12' is not one of 13, 14, 15, 16, 17, 18" in bad.stderr, bad.stderr
        assert not (state_dir / "fleet.json").exists()

        up = _fleet(state_dir, "up", "--postgres", "1", "--mariadb", "0", "--first", "190", "--pg-major", "13")
        assert up.returncode == 0, up.stdout + up.stderr
        assert (state_dir / "pg1" / "data" / "PG_VERSION").read_text().strip() == "13"
        # Debian's binaries (no --pg-major) on the running 13 fleet: refused, the fleet untouched.
        other = _fleet(state_dir, "up", "--postgres", "1", "--mariadb", "0", "--first", "190", "--pg-major", "")
        assert other.returncode != 0 and "`down` it first" in other.stderr, other.stdout + other.stderr
        assert _fleet(state_dir, "status").returncode == 0
    finally:
        _fleet(state_dir, "down")
        shutil.rmtree(parent, ignore_errors=True)
    assert _server_pids(state_dir) == []
