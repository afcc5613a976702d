# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sessions + policy -> plan: who would be ended, who is protected, and whether
the limits allow ending anyone at all. Pure (the bounded matching of a policy that
needs it runs in _matching.py's child) and engine-neutral.

Private to the collection. Standard library only, no Ansible import.

The plan never ends anything itself. When ``plan.limit_error`` is set the
caller must end nothing (limits fail closed) and report the message; the
victims are still listed so the report shows what would have been ended.

Bounded matching
----------------
A policy that ``needs_bounded_matching`` (a ``query_matches``, or before Python
3.9 a glob with several ``*``) is matched in a forked child with a hard deadline:
``_matching.py`` (the fork, the deadline, ``MatchTimeout``). Everything else is
matched here, in-process; this file neither forks nor signals.

The wait graph
--------------
``annotate_locks(sessions)`` is called once per listing, before planning: from
the drivers' ``blocked_by`` / ``lock_wait_seconds`` it sets ``blocking`` and
``blocking_seconds`` on every record and returns the host's lock summary (root
blockers with their waiters, and wait cycles). See docs/architecture.md "Locks".
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

from fractions import Fraction
from typing import Any, Callable, Hashable, Iterable

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    REASON_PROTECTED,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._limits import UNLIMITED, Limits
from ansible_collections.dbhygiene.sessions.plugins.module_utils._matching import MATCH_DEADLINE, Decision, decide
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import Policy
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import parse_instant


def _order(session: dict[str, Any]) -> tuple[int, int, str, str]:
    """Deterministic order: by id (numerically when ints), then key."""
    session_id = session.get("id")
    if isinstance(session_id, int) and not isinstance(session_id, bool):
        return (0, session_id, "", str(session.get("key")))
    return (1, 0, str(session_id), str(session.get("key")))


def _is_own(session: dict[str, Any], own_id: object) -> bool:
    # Compared as text: a driver handing over "4711" for 4711 must not unprotect us.
    return own_id is not None and str(session.get("id")) == str(own_id)


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.3g}%"


def _exact(number: float) -> Fraction:
    """A float as the decimal the user wrote (0.3 is 3/10, not 0.29999...)."""
    return Fraction(repr(float(number)))


def _limit_error(policy_name: str, limits: Limits, victims: int, seen: int) -> str | None:
    problems = []
    tripped = []
    if limits.max_terminations is not None and victims > limits.max_terminations:
        tripped.append("max_terminations")
    if limits.max_fraction is not None and seen and Fraction(victims, seen) > _exact(limits.max_fraction):
        tripped.append("max_fraction")
    if not tripped:
        return None
    for name in tripped:
        default = " (the default: the policy sets none)" if name in limits.defaults else ""
        problems.append(f"above limits.{name} {getattr(limits, name)}{default}")
    share = _percent(victims, seen) if seen else "n/a"
    above = " and ".join(problems)
    return (
        f"policy {shown_value(policy_name)} would end {victims} of {seen} client sessions ({share}), {above}: "
        f"nothing was ended (check the rules; if this many is intended, raise the limit in policy.limits or set it "
        f"to {UNLIMITED})"
    )


class Plan:
    """The outcome of planning one host.

    victims      [{"session", "rule", "action"}], ordered by session id
    not_ended    [{"session", "rule", "reason": "protected", "detail"}]: sessions a
                 rule matched but protect saved, ordered by session id
    seen         client sessions considered (our own excluded)
    kept         [{"session", "rule", "group", "group_size", "kept", "rank"}]: sessions a
                 rule with a budget matched and spared (and no other rule ends)
    groups       [{"rule", "group", "size", "kept", "ended"}]: the groups over their
                 budget, in policy order, then as first met in session order
    seen         client sessions considered (our own excluded)
    matched      sessions any rule matched (victims + protected + kept)
    limit_error  None, or why nothing may be ended (victims stay listed)

    A victim of a rule with a budget also has its group's fields: ``group`` ({per
    key: value}), ``group_size``, ``kept`` (how many of the group the budget spares)
    and ``rank`` (1 = the first to keep; a victim's rank is above ``kept``).
    """

    def __init__(
        self,
        policy: Policy,
        victims: list[dict[str, Any]],
        not_ended: list[dict[str, Any]],
        seen: int,
        limit_error: str | None,
        kept: Iterable[dict[str, Any]] = (),
        groups: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.policy = policy
        self.victims = victims
        self.not_ended = not_ended
        self.kept = list(kept)
        self.groups = list(groups)
        self.seen = seen
        self.matched = len(victims) + len(not_ended) + len(self.kept)
        self.limit_error = limit_error

    @property
    def ok(self) -> bool:
        """True when the limits allow ending the victims."""
        return self.limit_error is None

    def summary(self) -> dict[str, Any]:
        """Counts: totals, per rule (every rule, in policy order) and per action."""
        by_rule = {rule.name: {"victims": 0, "protected": 0} for rule in self.policy.rules}
        for rule in self.policy.rules:
            if rule.budget is not None:
                by_rule[rule.name]["kept"] = 0
        for entry in self.kept:
            by_rule[entry["rule"]]["kept"] += 1
        by_action: dict[str, int] = {}
        for victim in self.victims:
            by_rule[victim["rule"]]["victims"] += 1
            by_action[victim["action"]] = by_action.get(victim["action"], 0) + 1
        for entry in self.not_ended:
            by_rule[entry["rule"]]["protected"] += 1
        summary = {
            "policy": self.policy.name,
            "seen": self.seen,
            "matched": self.matched,
            "victims": len(self.victims),
            "protected": len(self.not_ended),
            "by_rule": by_rule,
            "by_action": by_action,
            "limit_error": self.limit_error,
            "limits": self.policy.limits.shown(),
        }
        if self.budgets:
            summary.update(kept=len(self.kept), groups_over_budget=len(self.groups))
        return summary

    @property
    def budgets(self) -> bool:
        """Whether a rule of the policy has a budget (the plan then says what it kept)."""
        return any(rule.budget is not None for rule in self.policy.rules)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable plan (sessions as given, so as serializable as they are)."""
        result = {
            "policy": self.policy.name,
            "victims": [dict(victim) for victim in self.victims],
            "not_ended": [dict(entry) for entry in self.not_ended],
            "seen": self.seen,
            "matched": self.matched,
            "limit_error": self.limit_error,
            "summary": self.summary(),
        }
        if self.budgets:
            result["groups"] = [dict(group) for group in self.groups]
        return result


def _holders(session: dict[str, Any]) -> list[Hashable]:
    """The ids `session` waits on (a record without lock fields waits on nothing)."""
    blocked_by = session.get("blocked_by") or ()
    own = session.get("id")
    holders = []
    for holder in blocked_by:
        if holder != own and holder not in holders:  # a self-wait is no wait on another session
            holders.append(holder)
    return holders


def _sort_ids(ids: Iterable[Hashable]) -> list[Hashable]:
    return sorted(ids, key=lambda value: _order({"id": value}))


def _wait_cycles(waits_on: dict[Hashable, list[Hashable]]) -> list[list[Hashable]]:
    """Strongly connected components with a cycle (iterative Tarjan): [[ids sorted]], sorted."""
    index_of, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = 0
    for start in waits_on:
        if start in index_of:
            continue
        work = [(start, iter(waits_on.get(start, ())))]
        index_of[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for target in edges:
                if target not in index_of:
                    index_of[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(waits_on.get(target, ()))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index_of[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(_sort_ids(component))
    return sorted(cycles, key=lambda ids: _order({"id": ids[0]}))


def annotate_locks(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """The wait graph of one listing: set ``blocking`` and ``blocking_seconds`` on every
    record (in place) and return the host's lock summary.

    ``blocking`` counts the distinct sessions waiting behind a record, directly or
    down a chain; ``blocking_seconds`` is the longest ``lock_wait_seconds`` among
    them (None when none). A *root blocker* waits on nothing and has ``blocking``
    above 0; a holder that is not in the listing (invisible to our login, a
    non-client backend) is a root too, with ``visible`` False. Sessions in a wait
    cycle (a deadlock the engine has not resolved yet) wait themselves, so they are
    never roots; the cycles are listed apart. Returns::

        {"waiting": <sessions waiting>, "longest_wait_seconds": <float or None>,
         "chains": [{"root", "visible", "user", "database", "application", "state",
                     "blocking", "blocking_seconds", "waiters": [ids sorted]}, ...],
         "cycles": [[ids sorted], ...]}

    with the chains by ``blocking`` descending (then root id).
    """
    by_id: dict[Hashable, dict[str, Any]] = {}
    for session in sessions:
        by_id.setdefault(session.get("id"), session)
    waits_on = {}  # id -> the ids it waits on
    waiters_of: dict[Hashable, list[Hashable]] = {}  # id -> the ids waiting on it directly
    for session in sessions:
        holders = _holders(session)
        if holders:
            waits_on[session.get("id")] = holders
            for holder in holders:
                waiters_of.setdefault(holder, []).append(session.get("id"))

    def waited(waiter_id: Hashable) -> float | None:
        seconds: float | None = by_id[waiter_id].get("lock_wait_seconds")
        return seconds

    behind = {}  # id -> set of every id waiting behind it, transitively
    for holder in waiters_of:
        seen = set()
        todo = list(waiters_of[holder])
        while todo:
            waiter = todo.pop()
            if waiter in seen:
                continue
            seen.add(waiter)
            todo.extend(waiters_of.get(waiter, ()))
        seen.discard(holder)  # in a cycle a session reaches itself
        behind[holder] = seen

    def longest(ids: Iterable[Hashable]) -> float | None:
        waits = [seconds for seconds in map(waited, ids) if seconds is not None]
        return max(waits) if waits else None

    for session in sessions:
        ids = behind.get(session.get("id"), ())
        session["blocking"] = len(ids)
        session["blocking_seconds"] = longest(ids)

    chains: list[dict[str, Any]] = []
    for holder, ids in behind.items():
        if not ids or holder in waits_on:
            continue
        root = by_id.get(holder)
        chain: dict[str, Any] = {"root": holder, "visible": root is not None}
        for name in ("user", "database", "application", "state"):
            chain[name] = root.get(name) if root is not None else None
        chain.update(blocking=len(ids), blocking_seconds=longest(ids), waiters=_sort_ids(ids))
        chains.append(chain)
    chains.sort(key=lambda chain: (-chain["blocking"], _order({"id": chain["root"]})))
    return {
        "waiting": len(waits_on),
        "longest_wait_seconds": longest(waits_on),
        "chains": chains,
        "cycles": _wait_cycles(waits_on),
    }


def _instant(session: dict[str, Any], field: str) -> float | None:
    """Seconds since the epoch of an ISO instant field of a record, or None."""
    moment = parse_instant(session.get(field))
    return None if moment is None else moment.timestamp()


def _connect_order(session: dict[str, Any]) -> float | None:
    """When the session connected, as a number that grows with later connections: its
    connected_at, else its `connect_order` (an engine that records no connect time hands
    out ids in connection order: MySQL / MariaDB thread ids), else None."""
    moment = _instant(session, "connected_at")
    return moment if moment is not None else session.get("connect_order")


# keep_by -> (what ranks a session, whether the highest of it is kept first).
_KEEP_RANKS: dict[str, tuple[Callable[[dict[str, Any]], float | None], bool]] = {
    "most_recent": (lambda session: _instant(session, "state_since"), True),
    "oldest": (_connect_order, False),
    "newest": (_connect_order, True),
}


def _ranked(positions: list[int], sessions: list[dict[str, Any]], keep_by: str) -> list[int]:
    """A group's members (positions in `sessions`), the first to keep first. A member whose
    instant is unknown is kept before the others (a field we cannot read never makes a
    victim); ties by id."""
    measure, highest_first = _KEEP_RANKS[keep_by]
    measured = []
    unknown = []
    for position in positions:
        session = sessions[position]
        value = measure(session)
        if value is None:
            unknown.append((_order(session), position))
        else:
            measured.append((-value if highest_first else value, _order(session), position))
    return [item[-1] for item in sorted(unknown)] + [item[-1] for item in sorted(measured)]


def _apply_budgets(
    policy: Policy, considered: list[dict[str, Any]], decisions: list[Decision]
) -> tuple[dict[tuple[int, int], dict[str, Any]], list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """The budget rules' decisions: ({(session position, rule index): group fields of a
    victim}, the groups over budget, {position: group fields} of the sessions a budget spared).

    Members of a rule's groups are the sessions it matches that protect does not save;
    one pass to group, one sort per group (linear in the sessions but for the sorts)."""
    budget_victims = {}
    spared: dict[int, dict[str, Any]] = {}
    over = []
    for index, rule in enumerate(policy.rules):
        budget = rule.budget
        if budget is None:
            continue
        groups: dict[Hashable, list[int]] = {}
        for position, (found, reason) in enumerate(decisions):
            if reason is None and index in found:
                groups.setdefault(budget.group_of(considered[position]), []).append(position)
        for group, positions in groups.items():
            if not budget.takes([considered[position] for position in positions]):
                continue
            size = len(positions)
            kept = min(budget.keep, size)
            label = budget.label(group)
            for rank, position in enumerate(_ranked(positions, considered, budget.keep_by), 1):
                fields = {"group": label, "group_size": size, "kept": kept, "rank": rank}
                if rank > kept:
                    budget_victims[(position, index)] = fields
                else:
                    spared.setdefault(position, dict(fields, rule=rule.name))
            if size > kept:
                over.append({"rule": rule.name, "group": label, "size": size, "kept": kept, "ended": size - kept})
    return budget_victims, over, spared


def plan(
    sessions: Iterable[dict[str, Any]], policy: Policy, own_id: object = None, match_deadline: float = MATCH_DEADLINE
) -> Plan:
    """Plan which of ``sessions`` (normalized records) ``policy`` would end.

    A session is a victim when a rule matches it, protect does not save it and,
    for a rule with a budget, its group is over the budget and it ranks beyond
    what the budget keeps; the first rule (policy order) that makes it a victim
    decides the rule name and action. The session whose id is ``own_id`` is never
    considered, whatever the policy. When the policy ``needs_bounded_matching``,
    matching runs in a child process and raises MatchTimeout after
    ``match_deadline`` seconds (_matching.py).
    """
    considered = [session for session in sorted(sessions, key=_order) if not _is_own(session, own_id)]
    decisions = decide(policy, considered, match_deadline)
    budget_victims, over, spared = _apply_budgets(policy, considered, decisions)
    victims = []
    not_ended = []
    kept = []
    for position, (session, (found, reason)) in enumerate(zip(considered, decisions)):
        if not found:
            continue
        if reason is not None:
            rule = policy.rules[found[0]]
            not_ended.append({"session": session, "rule": rule.name, "reason": REASON_PROTECTED, "detail": reason})
            continue
        for index in found:
            rule = policy.rules[index]
            if rule.budget is None:
                victims.append({"session": session, "rule": rule.name, "action": rule.action})
                break
            if (position, index) in budget_victims:
                victim = {"session": session, "rule": rule.name, "action": rule.action}
                victim.update(budget_victims[(position, index)])
                victims.append(victim)
                break
        else:
            if position in spared:
                kept.append(dict(spared[position], session=session))
    seen = len(considered)
    limit_error = _limit_error(policy.name, policy.limits, len(victims), seen)
    return Plan(policy, victims, not_ended, seen, limit_error, kept, over)
