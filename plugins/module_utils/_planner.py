# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sessions + policy -> plan: who would be ended, who is protected, and whether
the limits allow ending anyone at all. Pure and engine-neutral.

Private to the collection. Standard library only, no Ansible import.

The plan never ends anything itself. When ``plan.limit_error`` is set the
caller must end nothing (limits fail closed) and report the message; the
victims are still listed so the report shows what would have been ended.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from fractions import Fraction

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import (
    REASON_PROTECTED,
)


def _order(session):
    """Deterministic order: by id (numerically when ints), then key."""
    session_id = session.get("id")
    if isinstance(session_id, int) and not isinstance(session_id, bool):
        return (0, session_id, "", str(session.get("key")))
    return (1, 0, str(session_id), str(session.get("key")))


def _is_own(session, own_id):
    # Compared as text: a driver handing over "4711" for 4711 must not unprotect us.
    return own_id is not None and str(session.get("id")) == str(own_id)


def _percent(part, whole):
    return f"{100.0 * part / whole:.3g}%"


def _exact(number):
    """A float as the decimal the user wrote (0.3 is 3/10, not 0.29999...)."""
    return Fraction(repr(float(number)))


def _limit_error(policy_name, limits, victims, seen):
    problems = []
    if limits.max_terminations is not None and victims > limits.max_terminations:
        problems.append(f"above limits.max_terminations {limits.max_terminations}")
    if limits.max_fraction is not None and seen and Fraction(victims, seen) > _exact(limits.max_fraction):
        problems.append(f"above limits.max_fraction {limits.max_fraction}")
    if not problems:
        return None
    share = _percent(victims, seen) if seen else "n/a"
    above = " and ".join(problems)
    return (
        f"policy {policy_name!r} would end {victims} of {seen} client sessions ({share}), {above}: "
        "nothing was ended (check the rules, or raise the limit if this many is intended)"
    )


class Plan:
    """The outcome of planning one host.

    victims      [{"session", "rule", "action"}], ordered by session id
    not_ended    [{"session", "rule", "reason": "protected", "detail"}]: sessions a
                 rule matched but protect saved, ordered by session id
    seen         client sessions considered (our own excluded)
    matched      sessions any rule matched (victims + protected)
    limit_error  None, or why nothing may be ended (victims stay listed)
    """

    def __init__(self, policy, victims, skipped, seen, limit_error):
        self.policy = policy
        self.victims = victims
        self.not_ended = skipped
        self.seen = seen
        self.matched = len(victims) + len(skipped)
        self.limit_error = limit_error

    @property
    def ok(self):
        """True when the limits allow ending the victims."""
        return self.limit_error is None

    def summary(self):
        """Counts: totals, per rule (every rule, in policy order) and per action."""
        by_rule = {rule.name: {"victims": 0, "protected": 0} for rule in self.policy.rules}
        by_action = {}
        for victim in self.victims:
            by_rule[victim["rule"]]["victims"] += 1
            by_action[victim["action"]] = by_action.get(victim["action"], 0) + 1
        for skip in self.not_ended:
            by_rule[skip["rule"]]["protected"] += 1
        return {
            "policy": self.policy.name,
            "seen": self.seen,
            "matched": self.matched,
            "victims": len(self.victims),
            "protected": len(self.not_ended),
            "by_rule": by_rule,
            "by_action": by_action,
            "limit_error": self.limit_error,
        }

    def to_dict(self):
        """JSON-serializable plan (sessions as given, so as serializable as they are)."""
        return {
            "policy": self.policy.name,
            "victims": [dict(victim) for victim in self.victims],
            "not_ended": [dict(skip) for skip in self.not_ended],
            "seen": self.seen,
            "matched": self.matched,
            "limit_error": self.limit_error,
            "summary": self.summary(),
        }


def plan(sessions, policy, own_id=None):
    """Plan which of ``sessions`` (normalized records) ``policy`` would end.

    A session is a victim when a rule matches it and protect does not save it;
    the first matching rule (policy order) decides the rule name and action.
    The session whose id is ``own_id`` is never considered, whatever the policy.
    """
    victims = []
    skipped = []
    seen = 0
    for session in sorted(sessions, key=_order):
        if _is_own(session, own_id):
            continue
        seen += 1
        rule = policy.match(session)
        if rule is None:
            continue
        reason = policy.protect.protects(session)
        if reason is not None:
            skipped.append({"session": session, "rule": rule.name, "reason": REASON_PROTECTED, "detail": reason})
        else:
            victims.append({"session": session, "rule": rule.name, "action": rule.action})
    limit_error = _limit_error(policy.name, policy.limits, len(victims), seen)
    return Plan(policy, victims, skipped, seen, limit_error)
