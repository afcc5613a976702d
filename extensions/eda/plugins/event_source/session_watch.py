# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dbhygiene.sessions.session_watch: an Event-Driven Ansible source that watches the sessions of
every database host of an Ansible inventory and emits an event when a host has sessions its
policy would end, a lock chain over the audit threshold, or when it becomes unreachable or
reachable again.

Arguments:
  inventory  path of the Ansible inventory (the rulebook passes $DBHYGIENE_INVENTORY)
  group      the inventory group to watch (default: databases)
  interval   default poll interval in seconds, for hosts without dbhygiene_watch_interval (30)
  once       poll every host once and return (for tests and a cron-style check; default false)

Each host is read with its own dbhygiene_* variables (engine, login, TLS, policy,
dbhygiene_watch_interval, dbhygiene_audit_thresholds.max_lock_wait) and the collection's own
parser, planner and drivers, in check mode: the source never ends anything; a rulebook action
(dbhygiene.sessions.enforce) does, through the guarded kill, the trail and the report.

Events (all under the key ``dbhygiene``; no event carries a secret):
  type: would_end    host, engine, policy, would_end (how many), sessions (id, user, database,
                     application, state, idle_seconds, rule, action, key)
  type: lock_chain   host, engine, chains (root, blocking, blocking_seconds, waiters), threshold
  type: unreachable  host, engine, reason     type: reachable  host, engine
A host's would_end event repeats only when its would-be victims change, and at most once per
interval (one poll per interval); a lock_chain event only when its roots over the threshold
change. Hosts are polled concurrently, each in a thread of its own: a slow or frozen host
(bounded by its connect_timeout and query_timeout) delays no other host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import asyncio
import concurrent.futures
import logging
import math
import os
import sys
import time

# The collection's own code: the collection root is four folders up from this file
# (.../ansible_collections/dbhygiene/sessions/extensions/eda/plugins/event_source).
_HERE = os.path.dirname(os.path.abspath(__file__))
_COLLECTIONS = os.path.abspath(os.path.join(_HERE, *[os.pardir] * 7))
if os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections")) and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _ending, _engines, _errors, _policy  # noqa: E402
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (  # noqa: E402
    _connection,
    _inprocess,
    _report_model,
)

LOG = logging.getLogger("dbhygiene.sessions.session_watch")
DEFAULT_GROUP = "databases"
DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 1.0
# The loop looks for due hosts (and hosts whose poll ended) at least this often.
TICK = 0.25
MAX_THREADS = 128
# What an event tells of a session (never its statement: it may hold a literal).
EVENT_FIELDS = ("id", "key", "user", "database", "application", "client_addr", "state", "idle_seconds")


class WatchError(ValueError):
    """A host's watch variables cannot be used (the host is skipped, with the reason logged)."""


def _number(name, value, default):
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not math.isfinite(number) or number < MIN_INTERVAL:
        raise WatchError(f"{name}: expected a number of seconds >= {MIN_INTERVAL:g}, got {value!r}")
    return number


class HostWatch(object):
    """One host: its connection arguments, its policy, and what was last said of it."""

    def __init__(self, name, host_vars, default_interval):
        self.name = name
        self.engine = host_vars.get("dbhygiene_engine")
        if self.engine not in _connection.ENGINES:
            raise WatchError(f"dbhygiene_engine: expected one of {', '.join(_connection.ENGINES)}, got {self.engine!r}")
        raw = host_vars.get("dbhygiene_policy")
        self.policy = _policy.parse_policy(raw)
        problem = _engines.check_supported(self.policy, self.engine)
        if problem:
            raise WatchError(problem)
        self.policy_arg = raw if isinstance(raw, dict) else self.policy.to_dict()
        self.interval = _number("dbhygiene_watch_interval", host_vars.get("dbhygiene_watch_interval"), default_interval)
        thresholds = _report_model.parse_thresholds(host_vars.get("dbhygiene_audit_thresholds"))
        self.max_lock_wait = thresholds.get("max_lock_wait")
        params = {}
        for option in _connection.CONNECTION_OPTIONS:
            params[option] = host_vars.get("dbhygiene_" + option)
        for option in ("login_user", "login_password"):  # the engine's own login first
            own = host_vars.get(f"dbhygiene_{self.engine}_{option}")
            if own not in (None, ""):
                params[option] = own
        if params.get("login_host") in (None, ""):
            params["login_host"] = host_vars.get("ansible_host") or name
        self.module_args = _connection.module_args(self.engine, params)
        self.module_args["policy"] = self.policy_arg
        self.victims = None  # frozenset of keys last emitted (None: never polled)
        self.roots = None
        self.reachable = None
        self.busy = False
        self.next_poll = 0.0

    def poll(self):
        """The host's check-mode view now: the session_info result with the policy's plan."""
        return _inprocess.run(self.engine, "session_info", self.module_args, check_mode=True)

    def events(self, result):
        """The events one poll's result gives, updating what was last said of the host."""
        base = {"host": self.name, "engine": self.engine}
        out = []
        if result.get("failed"):
            if self.reachable is not False:
                reason = str(result.get("msg") or "failed")
                out.append(dict(base, type="unreachable", reason=reason))
            self.reachable = False
            return out
        if self.reachable is False:
            out.append(dict(base, type="reachable"))
        self.reachable = True
        plan = result.get("plan") or {}
        victims = plan.get("victims") or []
        keys = frozenset(str(v["session"].get("key")) for v in victims)
        if keys != self.victims and keys:
            sessions = []
            for victim in victims:
                entry = {name: victim["session"].get(name) for name in EVENT_FIELDS}
                entry.update(rule=victim.get("rule"), action=victim.get("action"))
                # A budget's victim: its group, the group's size, how many it keeps, its rank.
                entry.update((name, victim[name]) for name in _ending.GROUP_FIELDS if name in victim)
                sessions.append(entry)
            out.append(dict(base, type="would_end", policy=self.policy.name, would_end=len(victims), sessions=sessions))
        self.victims = keys
        if self.max_lock_wait is not None:
            chains = [
                c
                for c in (result.get("locks") or {}).get("chains") or []
                if (c.get("blocking_seconds") or 0) >= self.max_lock_wait
            ]
            roots = frozenset(str(c.get("root")) for c in chains)
            if roots != self.roots and roots:
                shown = [
                    {k: c.get(k) for k in ("root", "user", "database", "application", "blocking", "blocking_seconds")}
                    for c in chains
                ]
                for entry, chain in zip(shown, chains):
                    entry["waiters"] = list(chain.get("waiters") or [])
                out.append(dict(base, type="lock_chain", threshold=self.max_lock_wait, chains=shown))
            self.roots = roots
        return out


def load_hosts(inventory, group=DEFAULT_GROUP, default_interval=DEFAULT_INTERVAL):
    """[HostWatch] of the inventory's `group`, their variables templated as a play would see them.

    A host whose variables cannot be used is logged and left out (the others are watched)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[inventory])
    variables = VariableManager(loader=loader, inventory=manager)
    watches = []
    for host in manager.get_hosts(pattern=group):
        host_vars = variables.get_vars(host=host)
        templar = Templar(loader=loader, variables=host_vars)
        wanted = {
            name: templar.template(value)
            for name, value in host_vars.items()
            if name.startswith("dbhygiene_") or name == "ansible_host"
        }
        try:
            watches.append(HostWatch(host.name, wanted, default_interval))
        except (WatchError, _errors.PolicyError) as exc:
            LOG.error("dbhygiene.sessions.session_watch: host %s is not watched: %s", host.name, exc)
    return watches


async def _poll(queue, watch):
    try:
        result = await asyncio.to_thread(watch.poll)
    except Exception as exc:  # a bug: the host is reported, the watch goes on
        result = {"failed": True, "msg": f"{type(exc).__name__}: {exc}"}
    finally:
        watch.busy = False
    for event in watch.events(result):
        await queue.put({"dbhygiene": event})


def _thread_per_host(watches):
    """A thread per host being polled (up to MAX_THREADS): a frozen host holds its own thread
    (until its connect_timeout / query_timeout), never the others'."""
    workers = max(4, min(len(watches), MAX_THREADS))
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=workers))


async def poll_once(queue, watches):
    """Poll every host once, all at once, and emit their events."""
    _thread_per_host(watches)
    for watch in watches:
        watch.busy = True
    await asyncio.gather(*(_poll(queue, watch) for watch in watches))


async def main(queue, args):
    """The source: poll every due host, emit its events, until cancelled (or once)."""
    inventory = args.get("inventory") or os.environ.get("DBHYGIENE_INVENTORY")
    if not inventory:
        raise ValueError("session_watch: the inventory argument (or $DBHYGIENE_INVENTORY) is required")
    default_interval = _number("interval", args.get("interval"), DEFAULT_INTERVAL)
    watches = load_hosts(inventory, args.get("group") or DEFAULT_GROUP, default_interval)
    if not watches:
        raise ValueError(
            f"session_watch: no host to watch in group {args.get('group') or DEFAULT_GROUP!r} of {inventory}"
        )
    if args.get("once"):
        await poll_once(queue, watches)
        return
    _thread_per_host(watches)
    pending = set()
    while True:
        now = time.monotonic()
        for watch in watches:
            if not watch.busy and watch.next_poll <= now:
                watch.busy = True
                watch.next_poll = now + watch.interval
                pending.add(asyncio.ensure_future(_poll(queue, watch)))
        pending = {task for task in pending if not task.done()}
        due = [w.next_poll for w in watches if not w.busy]
        wake = min(due) if due else now + TICK
        await asyncio.sleep(max(0.05, min(wake - time.monotonic(), TICK)))


if __name__ == "__main__":

    class _PrintQueue(object):
        async def put(self, event):
            print(event, flush=True)

    asyncio.run(main(_PrintQueue(), {"inventory": sys.argv[1], "once": len(sys.argv) > 2}))
