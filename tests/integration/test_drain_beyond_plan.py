# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A drain run on the database host (dbhygiene_run_on: host) writes ahead what it changes
and ends, also what arrived after its plan (issue 19).

The role plans on the host (check mode), journals the plan, then runs the module for real
with what it journaled: a change of rights or a session beyond it (an account granted the
database, a login that got in, between the two) stops that run before anything of it is
sent; the role journals it and runs the module again. Here, the moment the plan's lines
reach the trail, an account is granted the drained database and a login of the window
opens a session on it, on both engines: each is in the trail (`changing` / `ending`)
before its outcome line, the window closes (the late account cannot connect, the late
session is gone), and open restores the late account's right.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import threading
import time
import uuid

from _change_window_fixtures import PASSWORD, Window
from _roles_fixtures import close_all, read_trail
from dbfleet import holder
from test_drain_journal_kill import _forget
from test_roles_drain import HOSTS, _group_vars, _inventory, _names, _run_drain

ATTEMPTS = 3  # the late arrivals must land between the plan and the real run (about a second): tried again


class _LateArrivals(object):
    """When the plan's first lines reach the trail: on each host, grant the drained database to
    the `late` account (created beforehand, without the right) and open a session of `app`."""

    def __init__(self, fleet, windows, audit_log, late, app, database):
        self.fleet, self.windows, self.audit_log = fleet, windows, audit_log
        self.late, self.app, self.database = late, app, database
        self.sessions = {}
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _grant(self, window):
        if window.engine == "postgresql":
            window._run([("GRANT CONNECT ON DATABASE %s TO %s" % (self.database, self.late), None)])
        else:
            window._run(
                [("GRANT ALL ON `%s`.* TO %%s@%%s" % self.database, (self.late, h)) for h in ("%", "localhost")]
            )

    def _planned_hosts(self):
        """The hosts whose plan's lines are in the trail."""
        if not os.path.exists(self.audit_log):
            return set()
        with open(self.audit_log) as handle:
            return set(json.loads(line)["host"] for line in handle if line.endswith("\n"))

    def _watch(self):
        try:
            while not self.stop.is_set() and len(self.sessions) < len(self.windows):
                for host in self._planned_hosts() - set(self.sessions):
                    window = self.windows[host]
                    self._grant(window)
                    self.sessions[host] = holder.open_session(
                        self.fleet, host, "idle", user=self.app, password=PASSWORD, database=self.database
                    )
                time.sleep(0.005)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported by the test
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def _change(line):
    return tuple(line.get(name) for name in ("change", "account", "right", "grantor"))


def _indexes(lines, match):
    return [n for n, line in enumerate(lines) if match(line)]


def _attempt(fleet, directory, tag):
    """One drain with late arrivals; None when they landed after the real run had read the
    server (nothing of them was changed or ended: try again), else the checks' figures."""
    names = _names(tag)
    app, late, billing = names["app"], names["clerk"], names["billing"]
    users = [app, names["migrator"], late]
    windows = {
        host: Window(fleet, host, (billing,), users, {app: [billing], names["migrator"]: [billing]}) for host in HOSTS
    }
    held = {}
    arrivals = None
    try:
        for window in windows.values():
            window.create()
            if window.engine == "postgresql":  # only an explicit grant gives the late role CONNECT
                window._run([("REVOKE CONNECT ON DATABASE %s FROM PUBLIC" % billing, None)])
                window._run(
                    [("GRANT CONNECT ON DATABASE %s TO %s" % (billing, u), None) for u in (app, names["migrator"])]
                )
        held = {
            host: [
                holder.open_session(fleet, host, "idle", user=app, password=PASSWORD, database=billing)
                for _n in range(3)
            ]
            for host in HOSTS
        }
        audit_log = os.path.join(directory, "audit.jsonl")
        inventory = _inventory(fleet, directory, _group_vars(fleet, directory, tag, dbhygiene_run_on="host"))
        with _LateArrivals(fleet, windows, audit_log, late, app, billing) as arrivals:
            run, report, _markdown = _run_drain(inventory, directory)
        assert arrivals.error is None, arrivals.error
        assert run.rc == 0, run.output[-6000:]
        trail = read_trail(audit_log, ending=True)
        figures = {}
        for host, window in windows.items():
            lines = [line for line in trail if line["host"] == host]
            assert len({line["run_id"] for line in lines}) == 1
            late_session = arrivals.sessions[host]
            late_dead = not late_session.alive()
            late_closed = not window.can_connect(late, billing)
            if not late_closed:
                return None  # the grant came after the real run had changed the rights: not the case under test
            # Every change of rights and every session ended is in the trail before its outcome line.
            for line in lines:
                if line["outcome"] in ("revoked", "locked"):
                    change = _change(line)
                    ahead = _indexes(lines, lambda x, c=change: x["outcome"] == "changing" and _change(x) == c)
                    assert ahead and ahead[0] < lines.index(line), line
                if line["outcome"] == "terminated":
                    ahead = _indexes(lines, lambda x, i=line["id"]: x["outcome"] == "ending" and x["id"] == i)
                    assert ahead and ahead[0] < lines.index(line), line
            # The window closed: the late account is shut out, the late session (and the others) gone.
            assert late_closed and late_dead, (host, late_closed, late_dead)
            assert not any(session.alive() for session in held[host])
            late_account = [line for line in lines if line.get("account", "").strip("'").split("'")[0] == late]
            assert [line["outcome"] for line in late_account][:1] == ["changing"], late_account
            ended = {item["id"] for item in report["hosts"][host]["terminated"]}
            assert {late_session.id} | {session.id for session in held[host]} <= ended
            figures[host] = len(lines)
        run, report, _markdown = _run_drain(inventory, directory, dbhygiene_drain_state="open")
        assert run.rc == 0, run.output[-6000:]
        for host, window in windows.items():
            assert window.can_connect(late, billing), host  # open restored the late account's right
        return figures
    finally:
        if arrivals is not None:
            close_all(list(arrivals.sessions.values()))
        close_all([session for sessions in held.values() for session in sessions])
        for window in windows.values():
            window.drop()
        _forget(windows, billing)  # the drain record, should the test have failed before its open


def test_a_drain_on_the_host_writes_ahead_what_arrived_after_its_plan(fleet, tmp_path):
    for attempt in range(ATTEMPTS):
        directory = str(tmp_path / f"try{attempt}")
        os.makedirs(directory)
        figures = _attempt(fleet, directory, "bp" + uuid.uuid4().hex[:6])
        if figures is not None:
            print(f"\nbeyond the plan: trail lines per host {figures} (attempt {attempt + 1})")
            return
        print(f"\nattempt {attempt + 1}: the late arrivals came after the real run read the servers; again")
    raise AssertionError(f"the late arrivals never landed between the plan and the real run in {ATTEMPTS} attempts")
