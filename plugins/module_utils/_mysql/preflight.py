# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight of the MySQL / MariaDB driver: whether the login may do what a run needs,
and the GRANTs that fix what it lacks.

Private to the collection. ``Preflight`` is a part of ``driver.MySQLDriver`` (a base before
``_driver.Driver``), on the rights the driver read when it connected (``privileges``,
``superusers_readable``, ``attrs_readable``, the lock and transaction sources). Never a secret
in a message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import LOCK_CONDITIONS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.grants import executable_procedures

# Policy conditions that read whether a thread is in a transaction (rows.transaction_state).
TRANSACTION_CONDITIONS = frozenset(["states", "transaction_longer_than"])


class Preflight(object):
    """What ``MySQLDriver``'s login may do, and the GRANTs that fix what it lacks."""

    def transaction_grants(self):
        """The GRANTs that let the login read the transaction events (the exact transaction state)."""
        return [
            f"GRANT SELECT ON performance_schema.{table} TO {self.account}"
            for table in ("events_transactions_current", "threads", "setup_consumers", "setup_instruments")
        ]

    def can_end_sessions(self):
        """Whether the login may end other users' threads (KILL, or RDS's procedures)."""
        self._use_platform()
        if self.flavour.rds_kill:
            grants = [row[0] for row in self._fetch_all(self.flavour.grants_query())]
            wanted = list(_platform.RDS_PROCEDURES.values())
            return executable_procedures(grants, wanted) == wanted
        return self.flavour.can_kill(self.privileges)

    def preflight_problems(
        self, signal, needs_superusers=True, needs_applications=True, needs_locks=True, needs_transactions=True
    ):
        """Messages for every missing right (empty when none). Never a secret."""
        who = f"login {self.account} on {self.target}"
        problems = []
        if not self.flavour.can_see_all(self.privileges):
            problems.append(
                f"{who} lacks PROCESS: it sees only its own threads, so no other session can be listed; "
                f"GRANT PROCESS ON *.* TO {self.account}"
            )
        if not signal:
            return problems
        if not self.can_end_sessions():
            problems.append(
                f"{who} lacks {self.flavour.kill_rights}: it cannot end other users' threads; "
                f"{self.flavour.kill_grant(self.account)}"
            )
        if needs_superusers and not self.superusers_readable:
            problems.append(
                f"{who} cannot read which accounts hold {' / '.join(self.flavour.superuser_privileges)}, so it "
                "cannot protect their sessions "
                f"(protect.superusers); {'; '.join(self.flavour.superuser_grants(self.account))} (no password "
                "hashes are exposed)"
            )
        if needs_applications and self.attrs_recorded and not self.attrs_readable:
            problems.append(
                f"{who} cannot read connection attributes, so applications (program_name) would look empty to "
                "applications rules and protect.applications; "
                f"GRANT SELECT ON performance_schema.session_connect_attrs TO {self.account}"
            )
        if needs_transactions and self.flavour.performance_schema and not self.transactions_readable:
            problems.append(
                f"{who} cannot read performance_schema's transaction events, so it cannot prove a Sleep thread is "
                "outside a transaction: every one would count as idle_in_transaction (states, "
                f"transaction_longer_than); {'; '.join(self.transaction_grants())}"
            )
        if needs_locks:
            problems.extend(self._lock_problems(who))
        return problems

    def _lock_problems(self, who):
        """What keeps the lock conditions from seeing the lock waits the server records."""
        problems = []
        if self.flavour.row_lock_waits_probe() is not None and self.flavour.performance_schema:
            if not self.row_lock_waits_readable:
                problems.append(
                    f"{who} cannot read who waits on whom for InnoDB locks, so lock conditions would see waiters "
                    "but not their blockers; "
                    f"GRANT SELECT ON performance_schema.data_lock_waits TO {self.account}; "
                    f"GRANT SELECT ON performance_schema.threads TO {self.account}"
                )
        if self.flavour.performance_schema and not self.metadata_locks_readable:
            problems.append(
                f"{who} cannot read metadata locks, so lock conditions would miss sessions waiting on a table "
                "lock (an ALTER TABLE behind an open transaction) and their blockers; "
                f"GRANT SELECT ON performance_schema.metadata_locks TO {self.account}; "
                f"GRANT SELECT ON performance_schema.threads TO {self.account}"
            )
        return problems

    def preflight(self, signal, policy=None):
        """Raise SessionError naming every missing right (and the GRANT that fixes it).

        `policy` (optional): when given, rights the policy does not need are not required
        (reading superusers when protect.superusers is false; reading connection
        attributes when no rule or protect uses applications).
        """
        needs_superusers = needs_applications = needs_locks = needs_transactions = True
        if policy is not None:
            needs_superusers = bool(policy.protect.superusers)
            needs_applications = "applications" in policy.conditions_used() or bool(policy.protect.applications)
            needs_locks = bool(policy.conditions_used().intersection(LOCK_CONDITIONS))
            needs_transactions = bool(TRANSACTION_CONDITIONS & set(policy.conditions_used()))
        problems = self.preflight_problems(
            signal, needs_superusers, needs_applications, needs_locks, needs_transactions
        )
        if problems:
            raise SessionError("; ".join(problems))
        if policy is not None:
            # Listings read program_name only for a policy that matches on it; the
            # victims get theirs anyway (end_sessions), for the results and the trail.
            self.list_applications = needs_applications
