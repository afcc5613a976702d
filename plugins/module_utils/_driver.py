# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract between the engine-neutral core and an engine driver.

Private to the collection. Importable without AnsibleModule, so that a module
(on the target) and an action plugin (on the controller) can share it.

A *session* is a plain dict, the normalized session record of docs/architecture.md::

    id                  pid (PostgreSQL) / thread id (MySQL), int
    key                 reuse-safe identity, str: "<pid>@<backend_start iso>" on
                        PostgreSQL, "<thread id>@<connect time or first seen>" on MySQL
    user, database, application        str or None
    client_addr         str (IP) or None for a local (unix socket) connection
    state               active | idle | idle_in_transaction |
                        idle_in_transaction_aborted | other
    connected_at        ISO 8601 str (UTC) or None
    state_since         ISO 8601 str (UTC) or None
    connected_seconds   float or None  (age of the connection)
    idle_seconds        float or None  (seconds since the last state change,
                        whatever the state is)
    query_seconds       float or None  (age of the running statement; None
                        unless state is active)
    transaction_seconds float or None  (age of the open transaction; None when
                        no transaction is open)
    query               str or None, truncated to QUERY_MAX_CHARS
    superuser           bool  (the session's user holds superuser-class rights)
    service             bool  (on a managed platform: the session is the service's own,
                        e.g. RDS rdsadmin; never ended, whatever the policy says)
    backend_type        str (PostgreSQL) / None
    command             str (MySQL COMMAND) / None

Lock fields (docs/architecture.md "Locks"). Set by the driver, from the same listing:

    blocked_by          list of int: ids of the sessions this one waits on
                        directly for a lock, [] when not waiting. Ids not in the
                        listing are kept (a holder the login cannot see, a
                        non-client backend); PostgreSQL parallel workers are
                        replaced by their leader; our own id is never a waiter
    lock_wait_seconds   float or None: how long it has waited (rounded like the
                        other *_seconds), None when not waiting
    lock_kind           str or None (engine extra): what it waits for, e.g.
                        relation, transactionid, tuple (PostgreSQL locktype),
                        row, metadata (MySQL); None when not waiting

Set by _planner.annotate_locks on every record of one listing (the wait graph):

    blocking            int: distinct sessions waiting behind this one,
                        transitively; 0 when none
    blocking_seconds    float or None: the longest lock_wait_seconds among them

A record without lock fields (a driver that cannot tell) is treated as not
waiting: blocked_by [], lock_wait_seconds None.

Optional, for an engine that records no connect time (connected_at None):

    connect_order       int: grows with each later connection (MySQL / MariaDB
                        thread ids); budgets' keep_by oldest / newest rank by it

Drivers may add further engine extras; the core never relies on them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform as _platform_mod
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut, one_line

STATES = (
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "other",
)

QUERY_MAX_CHARS = 1024

# Every field of the normalized session record, in display order (see above).
SESSION_FIELDS = (
    "id",
    "key",
    "user",
    "database",
    "application",
    "client_addr",
    "state",
    "connected_at",
    "state_since",
    "connected_seconds",
    "idle_seconds",
    "query_seconds",
    "transaction_seconds",
    "query",
    "superuser",
    "service",
    "backend_type",
    "command",
    "blocked_by",
    "lock_wait_seconds",
    "lock_kind",
    "blocking",
    "blocking_seconds",
)

# Reasons used in `not_ended` entries of results.
REASON_PROTECTED = "protected"
REASON_STATE_CHANGED = "state_changed"
REASON_GONE = "gone"
REASON_STILL_PRESENT = "still_present"  # signalled, but still there after the wait
REASON_FAILED = "failed"  # the signal itself failed (the message says why)

# A key the runner sets on the copy of a victim it hands to end_sessions() when the
# victim's rule matched it by waiting_longer_than: a driver that can tell should then
# also require that it still waits on a lock (one that got its lock moved on:
# state_changed). A driver that cannot tell ignores it. Never in results.
GUARD_STILL_WAITING = "guard_still_waiting"

# A server's part in replication (server facts `role`): a standby (PostgreSQL) or replica (MySQL /
# MariaDB) is a read-only copy of a primary, whose rights come from the primary by replication.
ROLE_PRIMARY = "primary"
ROLE_STANDBY = "standby"
ROLE_REPLICA = "replica"
ROLES = (ROLE_PRIMARY, ROLE_STANDBY, ROLE_REPLICA)

# The outcome of a session that end_sessions(victims, mode) ended, per mode.
OUTCOMES = {"terminate": "terminated", "cancel": "cancelled"}


# How much of a failed statement's template a result shows (a drain's transaction can be long).
STATEMENT_CHARS = 2000


def failed_statement(exc):
    """{"failed_statement": the template of the one statement whose failure raised `exc`}, or {}
    when no statement failed (a connection, a check). Found on `exc` or on the error it was
    raised from (a driver marks the library's error with `statement`)."""
    seen, hops = exc, 0
    while seen is not None and hops < 10:
        statement = getattr(seen, "statement", None)
        if isinstance(statement, str) and statement:
            return {"failed_statement": cut(one_line(statement), STATEMENT_CHARS)}
        seen, hops = seen.__cause__ or seen.__context__, hops + 1
    return {}


class Driver(object):
    """Base class of an engine driver. One instance = one open connection.

    Subclasses hold all SQL of their engine. Every method that takes a
    decision is in the core (policy, planner, runner), not here.
    """

    engine = None  # "postgresql" | "mysql"
    # Policy condition keys this engine cannot evaluate. The runner fails with a
    # clear message when a policy uses one of them, instead of ignoring it.
    unsupported_conditions = frozenset()
    # Seconds by which `state_since` of one unchanged session may differ between
    # two listings: 0 where the server stores the instant (PostgreSQL
    # state_change), about 1 where it is derived from an elapsed time (MySQL).
    state_since_tolerance = 0.0
    # The connection option `platform` (auto | self_managed | rds | cloudsql | azure); a driver
    # sets it from its params and implements detect_platform() for auto (module_utils/_platform.py).
    platform_option = None
    _platform = None

    @property
    def platform(self):
        """The managed platform the server runs on (detected once when the option is auto)."""
        if self._platform is None:
            self._platform = _platform_mod.resolve(self.platform_option, self.detect_platform)
        return self._platform

    @property
    def managed(self):
        return self.platform in _platform_mod.MANAGED

    def detect_platform(self):
        """The platform the server's markers say (auto); self_managed where a driver cannot tell."""
        return _platform_mod.SELF_MANAGED

    def platform_facts(self):
        """The ``platform`` entry of server_facts()."""
        return _platform_mod.facts(self.engine, self.platform, self.platform_option)

    def mark_service_sessions(self, sessions):
        """`sessions` with ``service`` set (the service's own accounts on a managed platform)."""
        return _platform_mod.mark_service_sessions(sessions, self.engine, self.platform)

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def own_id(self):
        """The id (pid / thread id) of our own connection."""
        raise NotImplementedError

    def server_facts(self):
        """dict: engine, flavour, version, max_connections, current user, role (server_role), ..."""
        raise NotImplementedError

    def server_role(self):
        """ROLE_PRIMARY, or ROLE_STANDBY / ROLE_REPLICA when the server is a read-only copy of
        another that replicates from it (its rights cannot be changed here)."""
        raise NotImplementedError

    def preflight(self, signal, policy=None):
        """Check our login can see every session's details, and, if `signal`,
        can end other users' sessions. Raise SessionError naming the missing
        privilege (and the GRANT that fixes it) otherwise. `policy` (parsed)
        lets a driver skip checks for what the policy does not use."""
        raise NotImplementedError

    def list_sessions(self):
        """All client sessions except our own, as normalized records, in one
        round trip. Background / system / replication threads are excluded."""
        raise NotImplementedError

    def end_sessions(self, victims, mode):
        """Guarded end of `victims` (session dicts as planned), mode is
        "terminate" or "cancel". A session is signalled only if it is still the
        same session in the same state as planned (and, for a victim marked
        GUARD_STILL_WAITING, still waiting on a lock, where the engine can tell).

        Returns a list of (session, outcome, detail) in the order given, where
        outcome is "terminated" | "cancelled" | REASON_STATE_CHANGED |
        REASON_GONE | REASON_FAILED and detail is a str or None.
        """
        raise NotImplementedError

    def guard_figures(self):
        """dict of how the guarded kill went (the `guard` result of a sweep), or None."""
        return None

    def query_templates(self):
        """The statement templates this driver runs (for the `queries` result).
        Templates only: never values, never secrets."""
        raise NotImplementedError

    def acquire_sweep_lock(self, timeout):
        """Take the server-side lock that only one sweep per server holds, waiting at
        most `timeout` seconds. True when held, False when another sweep still holds
        it. Released by release_sweep_lock() or when the connection closes."""
        raise NotImplementedError

    def release_sweep_lock(self):
        """Give up the sweep lock taken by acquire_sweep_lock() (no error if not held)."""
        raise NotImplementedError
