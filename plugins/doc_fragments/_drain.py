# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of every *_drain module besides the connection (module_utils/_drain.py,
    # drain_argument_spec()). Checked before any connection is opened.
    DOCUMENTATION = r"""
options:
  databases:
    description:
      - The databases to drain (or open). Names as the server spells them, matched exactly (no patterns).
      - At least one; each a non-empty name without a NUL character.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(drained) refuses new logins to O(databases) and ends the sessions on them (see the description of the module
        for what each engine changes); the rights it changed are recorded on the server first.
      - V(open) undoes exactly what a V(drained) run recorded for O(databases), and nothing else, then deletes the
        record. With nothing recorded it changes nothing.
    type: str
    choices: [drained, open]
    default: drained
  allow_users:
    description:
      - Logins that may still connect to O(databases) and whose sessions are kept, for example the migration's.
      - PostgreSQL role names; MySQL / MariaDB user names (every account C('user'@'host') of that name).
      - Matched exactly (no patterns). A name the server does not know fails the run before anything is changed (a typo
        would otherwise lock the migration out).
      - Superusers are always allowed and never changed; our own connection is never ended.
    type: list
    elements: str
    default: []
  grace:
    description:
      - The sessions on O(databases) are cancelled first (their running statement is stopped); those still running the
        same statement after O(grace) are terminated. Idle sessions are terminated straight away.
      - A duration as in a policy (C(45s), C(2m), C(1h30m)) or a whole number of seconds; at most one hour.
    type: raw
    default: 30s
  wait_timeout:
    description:
      - Seconds to wait, after ending, until the ended sessions are gone; those still there are reported in
        RV(not_ended) with reason C(still_present).
    type: float
    default: 10.0
  host_timeout:
    description:
      - Seconds the whole run on this server may take, connecting included; O(grace) + O(wait_timeout) must be less.
    type: float
    default: 300.0
  settle_keys:
    description:
      - Internal (the drain role's audit trail sets it). Keys of sessions an earlier run (a drain or a sweep) journaled
        as being ended without learning their fate; each is looked up in this run's first listing, before any change,
        and returned in RV(settled).
    type: list
    elements: str
  journaled_changes:
    description:
      - Internal (the drain role sets it when it runs the module on the database host, C(run_on=host)). The keys of
        the changes of rights the controller wrote ahead to its audit trail. With it (or O(journaled_sessions)), a real
        run makes no other change and ends no other session; a batch holding one stops the run before anything of it
        is sent, and the result lists them in RV(beyond_plan), for the role to journal before it runs the module again.
    type: list
    elements: str
  journaled_sessions:
    description:
      - Internal, as O(journaled_changes). The keys of the sessions the controller wrote ahead as being ended.
    type: list
    elements: str
"""
