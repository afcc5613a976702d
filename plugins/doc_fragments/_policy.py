# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The policy and wait options of every *_sessions module (module_utils/_argspec.py).
    DOCUMENTATION = r"""
options:
  policy:
    description:
      - What to end. The same structure for every engine.
      - A session is a victim when it matches B(any) rule; a rule matches when B(all) its conditions hold,
        unless the session also matches all conditions of the rule's O(policy.rules[].except).
      - O(policy.protect) always wins over the rules. Our own connection and non-client backends
        (background workers, replication, system threads) are never touched.
      - The whole policy is validated before any connection is opened; an error names the field and the value
        (a long value is quoted cut short).
      - The policy may also be given as a string holding the JSON or YAML of the mapping (an AWX survey answer is a
        string). It is parsed once (JSON first, then YAML with the safe loader; YAML needs PyYAML, which Ansible always
        brings, and without it only JSON is accepted and the message says so) and validated the same way. A string that
        is neither, or does not hold a mapping, fails naming the field C(policy). At most 1,000,000 characters.
      - 'Durations: V(45s), V(30m), V(1h30m), V(2d), V(1d2h3m4s), or a whole number of seconds (V(30), or V(30.0) from a
        template; V(1.5) is refused). Refused too: negatives, booleans, V(nan), V(inf), and more than 366 days (for
        O(policy.grace), more than 1 hour).'
      - Names (O(policy.name), O(policy.rules[].name)) are at most 200 characters.
    type: raw
    required: true
    suboptions:
      name:
        description: Recorded in the results and the audit trail.
        type: str
        default: unnamed
      action:
        description:
          - V(terminate) ends the session (the connection closes).
          - V(cancel) stops the running statement and keeps the connection. Cancelling a session that
            runs no statement (idle, idle in transaction) does nothing, so such victims are reported in
            RV(not_ended) with reason C(nothing_to_cancel).
          - V(cancel_then_terminate) cancels active sessions, waits O(policy.grace), then terminates those
            still running the same statement. Idle victims are terminated straight away, because a cancel
            would do nothing for them.
        type: str
        choices: [terminate, cancel, cancel_then_terminate]
        default: terminate
      grace:
        description:
          - With V(cancel_then_terminate), how long to wait after the cancel before terminating.
          - A duration of at most 1 hour (V(1h), 3600 seconds); more fails before any connection. The module waits this
            long itself, so a larger value would hold the play (and a connection to the server) for that long.
        type: raw
        default: 10s
      rules:
        description: The rules. At least one; each needs at least one condition (or a budget, O(policy.rules[].keep)).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Name of the rule, recorded with every session it matched. Default V(rule-N) (0-based index).
            type: str
          action:
            description: Overrides O(policy.action) for the sessions this rule matches.
            type: str
            choices: [terminate, cancel, cancel_then_terminate]
          states:
            description:
              - Normalized session states. MySQL/MariaDB C(Sleep) in an open transaction (C(performance_schema)'s
                transaction events, exact; where they are off, every C(Sleep) thread) is V(idle_in_transaction),
                outside one V(idle); a running command is V(active).
            type: list
            elements: str
            choices: [active, idle, idle_in_transaction, idle_in_transaction_aborted, other]
          users:
            description: Glob patterns (C(*), C(?), C([seq])) of the session's user; case-sensitive.
            type: list
            elements: str
          databases:
            description: Glob patterns of the session's database.
            type: list
            elements: str
          applications:
            description: Glob patterns of the application name (PostgreSQL C(application_name), MySQL C(program_name) connection attribute).
            type: list
            elements: str
          client_addresses:
            description:
              - IP addresses or networks (CIDR) of the client. V(local) matches connections over a unix socket.
            type: list
            elements: str
          idle_longer_than:
            description: The session has been in its current state longer than this (time since the last state change).
            type: raw
          running_longer_than:
            description: The session is V(active) and its current statement has run longer than this.
            type: raw
          transaction_longer_than:
            description: The session's open transaction is older than this.
            type: raw
          connected_longer_than:
            description: The session has been connected longer than this. Not every engine can tell; the module fails if it cannot.
            type: raw
          query_matches:
            description:
              - A Python regular expression searched (C(re.search)) in the session's (truncated) query text.
              - At most 1,000 characters; a pattern Python cannot compile (including one that overflows or nests too
                deeply, such as V(a{99999999999})) fails before any connection, naming this field.
              - Bounded. A regular expression search can take exponential time (V((a+\)+$) on a query of many C(a)), and
                Python cannot interrupt it. So when any rule has a C(query_matches), the matching of each host's sessions
                runs in one child process with a hard deadline of 10 seconds; past it, the child is killed and the host
                fails with a message naming this field, and nothing is ended there. The child also ends itself shortly
                after the deadline, even if the module or C(ansible-playbook) was killed first. Cost, measured on 5,000
                sessions, about 12 to 22 milliseconds per host more than matching in-process (C(tools/bench_matching.py)).
              - Before Python 3.9, globs with several C(*) are matched the same way (C(fnmatch) backtracked there).
            type: str
          waiting_longer_than:
            description:
              - The session has waited for a lock (held by another session) longer than this, for its current wait.
              - A session that does not wait never matches. Pair it with O(policy.rules[].action=cancel) to stop a
                statement stuck in a lock queue (a DDL behind a long transaction blocks every query queued after it)
                and keep its connection.
              - PostgreSQL 14 and later measure the wait from C(pg_locks.waitstart); on 10 to 13 the wait is taken from
                the waiter's C(state_change) (when its current statement started), so it can be longer than the wait.
              - Guarded like every kill, and more. On PostgreSQL a session planned by a rule with this condition is
                signalled only while it still waits on a lock; one that got its lock meanwhile (and so moved on) is
                reported in RV(not_ended) with reason C(state_changed). A parallel query whose worker waits counts for
                its leader (PostgreSQL 13 and later); the leader itself waits on its workers, not on a lock, so this
                guard reports it C(state_changed) rather than signalling it.
            type: raw
          blocking_longer_than:
            description:
              - The session is a B(root blocker) (it waits on no lock itself, and other sessions wait on a lock it
                holds, directly or down a chain) and one of the sessions waiting behind it has waited longer than this.
              - The sessions waiting behind it are never matched by this condition. Sessions in a wait cycle (a
                deadlock in progress) are never root blockers; the engine resolves a deadlock itself.
            type: raw
          blocking_at_least:
            description:
              - The session is a root blocker (see O(policy.rules[].blocking_longer_than)) with at least this many
                sessions waiting behind it, counted transitively (a chain A <- B <- C counts 2 for A).
              - A whole number from 1 to 1000000.
            type: int
          keep:
            description:
              - A budget. The sessions this rule matches (after O(policy.protect) and O(policy.rules[].except); a
                protected session neither counts nor is ended) are grouped by O(policy.rules[].per), and this many of
                each group are spared; the rest of the group are victims, ranked by O(policy.rules[].keep_by). A group
                of this size or smaller ends nothing. Without O(policy.rules[].per) the rule's matches on the host are
                one group.
              - A whole number from 0 to 1000000. A rule with a budget needs no other condition.
              - Each victim's entry says its C(group) (the O(policy.rules[].per) keys and the session's values),
                C(group_size), C(kept) (how many of the group are spared) and C(rank) (1 = the first to keep); the
                result's RV(groups) lists the groups over budget. Check mode lists exactly what a real run ends. The
                guarded kill applies to each victim as to any other; a victim that moved on between the plan and its
                signal is reported C(state_changed) and the group is not re-ranked in that run (it keeps one more than
                its budget until the next run).
              - A session spared by a budget may still be a victim of another rule (a later rule without a budget, for
                one); the first rule, in policy order, that makes it a victim names it.
            type: int
          per:
            description:
              - What groups the sessions for O(policy.rules[].keep), one or a list of V(user), V(database),
                V(application), V(client_address) (each at most once). Needs O(policy.rules[].keep) or a group
                condition.
            type: list
            elements: str
            choices: [user, database, application, client_address]
          keep_by:
            description:
              - Which sessions of a group O(policy.rules[].keep) spares. V(most_recent) the latest state changes (the
                most recently active); V(oldest) the earliest connected (pt-kill's C(--victims all-but-oldest));
                V(newest) the latest connected.
              - MySQL and MariaDB record no connect time, so V(oldest) and V(newest) rank by thread id, which the server
                hands out in connection order. A session whose instant is unknown is spared before the others. Ties go
                by session id.
            type: str
            choices: [most_recent, oldest, newest]
            default: most_recent
          each_running_longer_than:
            description:
              - A group condition (pt-kill's C(--each-busy-time)). A group of this rule is taken only when each of its
                sessions is V(active) and has run its current statement longer than this. Without
                O(policy.rules[].keep) every session of such a group is a victim.
            type: raw
          any_running_longer_than:
            description:
              - A group condition (pt-kill's C(--any-busy-time)). A group of this rule is taken only when at least one
                of its sessions is V(active) and has run its current statement longer than this. Without
                O(policy.rules[].keep) every session of such a group is a victim.
            type: raw
          group_size_at_least:
            description:
              - A group condition (pt-kill's C(--query-count)). A group of this rule is taken only when it has at least
                this many sessions (protected ones not counted). Without O(policy.rules[].keep) every session of such a
                group is a victim. A whole number from 1 to 1000000.
            type: int
          except:
            description:
              - Conditions with the same keys as a rule. A session matching all of them is not matched by this rule.
            type: dict
            suboptions:
              states:
                description: See O(policy.rules[].states).
                type: list
                elements: str
                choices: [active, idle, idle_in_transaction, idle_in_transaction_aborted, other]
              users:
                description: See O(policy.rules[].users).
                type: list
                elements: str
              databases:
                description: See O(policy.rules[].databases).
                type: list
                elements: str
              applications:
                description: See O(policy.rules[].applications).
                type: list
                elements: str
              client_addresses:
                description: See O(policy.rules[].client_addresses).
                type: list
                elements: str
              idle_longer_than:
                description: See O(policy.rules[].idle_longer_than).
                type: raw
              running_longer_than:
                description: See O(policy.rules[].running_longer_than).
                type: raw
              transaction_longer_than:
                description: See O(policy.rules[].transaction_longer_than).
                type: raw
              connected_longer_than:
                description: See O(policy.rules[].connected_longer_than).
                type: raw
              query_matches:
                description: See O(policy.rules[].query_matches).
                type: str
              waiting_longer_than:
                description: See O(policy.rules[].waiting_longer_than).
                type: raw
              blocking_longer_than:
                description: See O(policy.rules[].blocking_longer_than).
                type: raw
              blocking_at_least:
                description: See O(policy.rules[].blocking_at_least).
                type: int
      protect:
        description: Sessions never touched, whatever the rules say. A matched but protected session is reported in RV(not_ended) with reason C(protected).
        type: dict
        suboptions:
          users:
            description: Glob patterns of users to protect.
            type: list
            elements: str
          applications:
            description: Glob patterns of application names to protect.
            type: list
            elements: str
          databases:
            description: Glob patterns of databases to protect.
            type: list
            elements: str
          client_addresses:
            description: IP addresses, networks, or V(local) to protect.
            type: list
            elements: str
          superusers:
            description: Protect sessions of superusers (PostgreSQL C(rolsuper); MySQL/MariaDB C(SUPER)-class rights).
            type: bool
            default: true
      limits:
        description:
          - Fail closed. When the plan is above a limit on a host, nothing is ended on that host and the module fails with a
            message saying which limit, how many and out of how many. Check mode fails the same way, with the same message.
          - Safe by default. A limit the policy does not set (the key left out, or null) is the default, at most V(100)
            victims and at most V(0.9) of the client sessions per host, so that a rule written too broadly cannot end every
            session of a fleet. Raise a limit with a number; lift it with the string V(unlimited), the one spelling that
            does (for example O(policy.limits.max_terminations=500) and O(policy.limits.max_fraction=unlimited)).
          - On a host with few client sessions the default share can be reached by very few victims (1 of 1 is above
            V(0.9)); set O(policy.limits.max_fraction) where ending every session of such a host is intended.
          - The plan's C(summary.limits) (and the audit and enforce reports) shows the limits in effect and which of them
            are the defaults.
        type: dict
        suboptions:
          max_terminations:
            description:
              - More victims than this on one host fails (a whole number >= 0), or V(unlimited).
              - Default V(100).
            type: raw
          max_fraction:
            description:
              - Victims above this share (0 < x <= 1) of the host's client sessions fails, or V(unlimited).
              - Default V(0.9).
            type: raw
  wait_timeout:
    description:
      - After ending sessions, wait at most this many seconds until they are gone (or, for a cancel, no longer run the
        same statement). Sessions still there are reported in RV(not_ended) with reason C(still_present).
    type: float
    default: 10.0
  host_timeout:
    description:
      - The deadline of the whole host, in seconds (more than 0, at most 86400), from before connecting to the result.
        Every step (taking the sweep lock, listing, each batch of signals, the O(policy.grace) wait, the O(wait_timeout)
        wait) starts only while time is left, and the waits end at the deadline. When it runs out the host fails with a
        message naming O(host_timeout); sessions already ended are still listed in RV(terminated) / RV(cancelled).
      - O(wait_timeout) (finite, 0 to 3600) plus O(policy.grace) (when a rule uses V(cancel_then_terminate)) must be less
        than O(host_timeout), which also covers connecting, listing and signalling; otherwise the module fails before
        connecting, naming those options.
      - A real run holds a lock on the database server for the sweep (PostgreSQL advisory lock, MySQL/MariaDB
        C(GET_LOCK)), so two sweeps never work on one server at once. A second sweep waits for it at most 60 seconds (less
        when the deadline leaves less after the waits), then fails the host as busy, ending nothing. Check mode changes
        nothing and takes no lock.
    type: float
    default: 300.0
  settle_keys:
    description:
      - Internal (the enforce role's audit trail sets it). Keys of sessions an earlier run signalled without learning
        their fate; each is looked up in this run's listing and returned in RV(settled).
    type: list
    elements: str
  end_only:
    description:
      - Internal (the enforce role sets it when it runs this module on the database host). The keys of the sessions a
        real run may end, those the plan journaled in the audit trail beforehand; any other victim is not ended and is
        reported in RV(not_ended) with reason C(state_changed).
    type: list
    elements: str
notes:
  - Check mode runs no statement that changes anything, and RV(terminated) / RV(cancelled) list exactly the sessions a real run
    would end at that moment. The privilege preflight runs in check mode too, so a dry run fails where the real run would.
  - A session is ended only if it is still the same session in the same state as when planned (guarded kill); one that moved
    on is reported in RV(not_ended) with reason C(state_changed), one that left with C(gone).
  - The sessions a rule matched but that were not ended are RV(not_ended), each with its C(reason); no result has a key
    named C(skipped) (Ansible reserves it), so a task that ended sessions shows as changed.
"""
