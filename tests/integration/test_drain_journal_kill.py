# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain's write-ahead trail on real servers (issue 19): each change of rights is in the
audit trail (`outcome: changing`) before it is made, each session it ends (`outcome: ending`)
before its signal.

- The controller killed mid-drain (SIGKILL of ansible-playbook's process group, its worker
  with it) while both servers are frozen at the first session the drain ends, after every
  change of rights: every right changed on the server has its `changing` line, every session
  gone from the server after the thaw its `ending` line, the run left no outcome line, the
  pending files hold the changes and the sessions, and the next run (open) settles each
  (changes from the server's record, sessions from its listing: `terminated` / `not_ended`)
  with a line naming the killed run, then restores the rights.
- A trail on a full file system: the drain fails before any change, naming the path.
Unit tests of the logic: tests/unit/plugins/plugin_utils/test_drain_journal.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from _change_window_fixtures import Window
from _roles_fixtures import close_all, read_trail
from conftest import ROOT, ansible_env
from dbfleet import faults, holder
from test_roles_drain import DRAIN, HOSTS, _forget_mariadb_record, _group_vars, _inventory, _names, _run_drain
from test_trail_faults import _fill, _mount_tmpfs, _umount

PASSWORD = "Window-pw-1"
VICTIMS = 30
FROZEN_VICTIMS = 8


def _windows(fleet, tag):
    names = _names(tag)
    users = [names["app"] + str(n) for n in range(3)] + [names["migrator"]]
    return {
        host: Window(fleet, host, (names["billing"],), users, {user: [names["billing"]] for user in users})
        for host in HOSTS
    }


def _held(fleet, names, count):
    """`count` idle sessions on each host, of the window's app logins, on its database."""
    return {
        host: [
            holder.open_session(
                fleet, host, "idle", user=names["app"] + str(n % 3), password=PASSWORD, database=names["billing"]
            )
            for n in range(count)
        ]
        for host in HOSTS
    }


def _forget(windows, database):
    """The drain record of a test's database on each server, should the test have failed
    before its open (a record of a dropped database would show in every later `closed`)."""
    for window in windows.values():
        if window.engine != "postgresql":
            _forget_mariadb_record(window, database)
            continue
        conn = window._admin()
        try:
            cur = conn.cursor()
            cur.execute("SELECT to_regclass('dbhygiene.drain') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("DELETE FROM dbhygiene.drain WHERE database = %s", (database,))
        finally:
            conn.close()


def _connect_items(window, database):
    """PostgreSQL: the (grantee, grantor) pairs holding CONNECT on `database`; MariaDB: the
    accounts of the window locked now."""
    if window.engine != "postgresql":
        return window.locked_accounts()
    conn = window._admin()
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, "
            "pg_get_userbyid(a.grantor)::text FROM pg_database d, "
            "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = %s AND a.privilege_type = 'CONNECT'",
            (database,),
        )
        return set(cur.fetchall())
    finally:
        conn.close()


def _changed(window, database, before):
    """The rights the drain changed, as (change, account, grantor) triples."""
    now = _connect_items(window, database)
    if window.engine == "postgresql":
        return {("revoked", grantee, grantor) for grantee, grantor in before - now} | {
            ("granted", grantee, grantor) for grantee, grantor in now - before
        }
    return {("locked", account, None) for account in now - before}


def _tree(root):
    """`root` and every process descended from it (ansible-core's workers are in sessions of
    their own: a signal to ansible-playbook's process group does not reach them)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    parents.setdefault(int(handle.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _kill_tree(root):
    """The controller dies as a machine or a job pod does: ansible-playbook and its workers
    stopped at once (no process goes on meanwhile), then SIGKILLed."""
    stopped = faults.send(_tree(root), signal.SIGSTOP)
    stopped += faults.send([pid for pid in _tree(root) if pid not in stopped], signal.SIGSTOP)
    faults.send(stopped, signal.SIGKILL)


def _gone(held, settle=1.0, bound=30.0):
    """The ids of `held` sessions gone from their server, once that stopped changing for `settle`
    seconds (a thawed server finishes the terminate it was frozen in)."""
    ids = [session.id for session in held]
    server = held[0].server
    last, since, ends = None, time.monotonic(), time.monotonic() + bound
    while time.monotonic() < ends:
        now = set(ids) - set(holder.live(server, ids))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
        time.sleep(0.1)
    return last


def _killed_mid_drain(fleet, inventory, held):
    """ansible-playbook of the drain and its workers SIGKILLed once both servers froze at the
    first session the drain ended; the servers are thawed after."""
    watches = [faults.at_first_death(fleet, host, held[host], "freeze") for host in HOSTS]
    try:
        proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, DRAIN],
            cwd=ROOT,
            env=ansible_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        ends = time.monotonic() + 240
        while any(watch.fired is None for watch in watches) and proc.poll() is None and time.monotonic() < ends:
            time.sleep(0.05)
        _kill_tree(proc.pid)
        proc.wait()
    finally:
        for watch in watches:
            watch.done()
    return [watch.fired for watch in watches]


@contextlib.contextmanager
def _window(fleet, prefix):
    """(tag, names, windows, held) of a change window on each host for one test: its database and
    logins created, `held` the sessions the test opens (a dict by host); all of them closed,
    dropped and forgotten after."""
    tag = prefix + uuid.uuid4().hex[:6]
    names = _names(tag)
    windows = _windows(fleet, tag)
    held = {}
    try:
        for window in windows.values():
            window.create()
        yield tag, names, windows, held
    finally:
        close_all([session for sessions in held.values() for session in sessions])
        for window in windows.values():
            window.drop()
        _forget(windows, names["billing"])


def test_a_controller_killed_mid_drain_left_every_changed_right_in_the_trail(fleet, tmp_path):
    with _window(fleet, "jk") as (tag, names, windows, held):
        before = {host: window.catalog() for host, window in windows.items()}
        items = {host: _connect_items(window, names["billing"]) for host, window in windows.items()}
        held.update(_held(fleet, names, VICTIMS))  # enough that the drain is still ending them when its server freezes
        directory = str(tmp_path)
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag))
        fired = _killed_mid_drain(fleet, inventory, held)
        assert all(fired), "the drain did not reach its sessions on every host before the kill"

        audit_log = os.path.join(directory, "audit.jsonl")
        trail = read_trail(audit_log, ending=True)
        pending, pending_sessions, gone = {}, {}, {}
        for host, window in windows.items():
            changed = _changed(window, names["billing"], items[host])
            assert changed, host  # the drain changed rights before it ended sessions
            lines = [line for line in trail if line["host"] == host]
            journaled = {(line["change"], line["account"], line["grantor"]) for line in lines if "change" in line}
            assert changed <= journaled, (host, changed, journaled)
            # every session the drain ended (gone after the thaw) was in the trail before its signal
            ending = dict((line["id"], line) for line in lines if line["outcome"] == "ending")
            gone[host] = _gone(held[host])
            assert gone[host], host  # the server froze at the first session it ended
            assert gone[host] <= set(ending), (host, gone[host], sorted(ending))
            # killed before the module returned: no outcome line of the run, only the ones written ahead
            assert {line["outcome"] for line in lines} == {"changing", "ending"}, [
                (line["outcome"], line["action"]) for line in lines
            ]
            with open(os.path.join(directory, "audit.jsonl.pending", "drain", host + ".json")) as handle:
                pending[host] = json.load(handle)["pending"]
            assert {(p["change"], p["account"], p["grantor"]) for p in pending[host]} == journaled
            # the sessions wait in the sweep's pending file, as the enforce role's victims do
            with open(os.path.join(directory, "audit.jsonl.pending", host + ".json")) as handle:
                pending_sessions[host] = json.load(handle)["pending"]
            assert {p["key"] for p in pending_sessions[host]} == {line["key"] for line in ending.values()}
        print(
            "\nkilled mid-drain; changes journaled:",
            {h: len(p) for h, p in pending.items()},
            "sessions journaled / gone:",
            {h: (len(pending_sessions[h]), len(gone[h])) for h in HOSTS},
        )

        run, report, _markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-4000:]
        trail = read_trail(audit_log)
        for host, window in windows.items():
            settles = [line for line in trail if line["host"] == host and line.get("settles") and "change" in line]
            killed_run = {p["run_id"] for p in pending[host]}
            # each session journaled `ending` settled from the open's first listing, naming the killed run
            settled = [line for line in trail if line["host"] == host and line.get("settles") and "change" not in line]
            assert {line["settles"] for line in settled} == killed_run
            by_id = dict((p["id"], p) for p in pending_sessions[host])
            assert sorted((line["id"], line["outcome"]) for line in settled) == sorted(
                (i, "terminated" if i in gone[host] else "not_ended") for i in by_id
            ), settled
            assert not os.path.exists(os.path.join(directory, "audit.jsonl.pending", host + ".json"))
            assert {line["settles"] for line in settles} == killed_run
            assert sorted((line["change"], line["account"], line["outcome"]) for line in settles) == sorted(
                (p["change"], p["account"], p["change"])
                for p in pending[host]  # each made, as the record says
            ), settles
            assert window.catalog() == before[host]  # open restored the rights exactly
            assert not os.path.exists(os.path.join(directory, "audit.jsonl.pending", "drain", host + ".json"))


FROZEN_ATTEMPTS = 5  # a freeze that lands after a host's signalling statement returned is tried again


def test_a_drain_frozen_at_its_first_session_names_the_unknown_ones_and_the_next_run_settles_them(fleet, tmp_path):
    """The controller lives on: the server frozen at the first session the drain ends stops
    answering (`dbhygiene_query_timeout`); the drain fails naming how many sessions it
    journaled and never learned the fate of, each has an `unknown` line, the report lists
    them, and the open after the thaw settles every one. A freeze that came after a host's
    statement had returned (every session terminated, in the trail) is not the case: again."""
    for attempt in range(FROZEN_ATTEMPTS):
        if _frozen_drain_case(fleet, tmp_path / f"try{attempt}"):
            return
        print(f"\nattempt {attempt + 1}: the freeze landed after a host's statement returned; again")
    pytest.fail(f"the freeze never landed while a statement was at work in {FROZEN_ATTEMPTS} attempts")


def _frozen_drain_case(fleet, tmp_path):
    """One frozen drain and the open after it; False when on some host the freeze came too late."""
    tmp_path.mkdir()
    with _window(fleet, "ju") as (tag, names, _windows, held):
        held.update(_held(fleet, names, FROZEN_VICTIMS))
        directory = str(tmp_path)
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_query_timeout=3))
        watches = [faults.at_first_death(fleet, host, held[host], "freeze") for host in HOSTS]
        try:
            run, report, _markdown = _run_drain(inventory, directory)
        finally:
            for watch in watches:
                watch.done()
        assert all(watch.fired for watch in watches), "the drain did not reach its sessions on every host"
        audit_log = os.path.join(directory, "audit.jsonl")
        trail = read_trail(audit_log, ending=True)
        unknown = {}
        for host in HOSTS:
            lines = [line for line in trail if line["host"] == host and "change" not in line]
            ending = {line["id"] for line in lines if line["outcome"] == "ending"}
            outcomes = dict((line["id"], line["outcome"]) for line in lines if line["outcome"] != "ending")
            assert set(outcomes) == ending, (host, outcomes, ending)  # each journaled session got an outcome line
            unknown[host] = {i for i, outcome in outcomes.items() if outcome == "unknown"}
            gone = _gone(held[host])
            assert gone <= ending, (host, gone, ending)
            if not unknown[host]:
                # The statement had returned before the freeze: every session it ended is terminated.
                assert gone <= {i for i, outcome in outcomes.items() if outcome == "terminated"}, (host, outcomes)
        if not all(unknown.values()):
            _run_drain(inventory, directory, dbhygiene_drain_state="open")  # the window closed again
            return False
        assert run.rc != 0
        for host in HOSTS:
            message = report["failed_hosts"][host]
            assert f"{len(unknown[host])} sessions whose fate is unknown" in message, message
            assert {item["id"] for item in report["hosts"][host]["unknown"]} == unknown[host]
        print("\nfrozen mid-drain; unknown:", {h: len(u) for h, u in unknown.items()})
        run, report, _markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-4000:]
        trail = read_trail(audit_log)
        for host in HOSTS:
            settled = [line for line in trail if line["host"] == host and line.get("settles") and "change" not in line]
            assert {line["id"] for line in settled} == unknown[host]
            for line in settled:
                alive = line["id"] in {s.id for s in held[host] if s.alive()}
                assert line["outcome"] == ("not_ended" if alive else "terminated"), line
            assert not os.path.exists(os.path.join(directory, "audit.jsonl.pending", host + ".json"))
    return True


def test_a_full_trail_fails_the_drain_before_any_change(fleet, tmp_path):
    tag = "jf" + uuid.uuid4().hex[:6]
    names = _names(tag)
    windows = _windows(fleet, tag)
    mount = str(tmp_path / "full")
    _mount_tmpfs(mount, "256k")
    try:
        for window in windows.values():
            window.create()
        before = {host: window.catalog() for host, window in windows.items()}
        directory = str(tmp_path)
        trail_path = os.path.join(mount, "audit.jsonl")
        with open(trail_path, "w") as handle:
            handle.write(json.dumps({"earlier": "line", "pad": "x" * 8000}) + "\n")
        _fill(mount, 0)
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_audit_log=trail_path))
        run, report, _markdown = _run_drain(inventory, directory)
        assert run.rc != 0
        for host, window in windows.items():
            message = report["failed_hosts"][host]
            assert trail_path in message and "No space left on device" in message, message
            assert "changes of rights was made" in message, message
            assert window.catalog() == before[host]
            assert report["hosts"][host]["changes"] == []
        assert read_trail(trail_path) == [{"earlier": "line", "pad": "x" * 8000}]
    finally:
        for window in windows.values():
            window.drop()
        _forget(windows, names["billing"])
        _umount(mount)
