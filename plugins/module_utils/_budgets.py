# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rule's budget (docs/architecture.md "Groups and budgets"): group the sessions a rule
matches, take a group when its group conditions hold, spare some of each. Pure, Python 3.8.

A rule with ``keep`` (a whole number of sessions, 0 to ``MAX_KEEP``) groups the sessions it
matches by ``per`` (one or a list of ``GROUP_KEYS``; none: the host as one group) and spares
``keep`` of each group, ranked by ``keep_by`` (``KEEP_BY``). The group conditions
``each_running_longer_than`` / ``any_running_longer_than`` (pt-kill's ``--each-busy-time`` /
``--any-busy-time``) take a group only when each / any of its members runs a statement for
longer than the duration, ``group_size_at_least`` (``--query-count``) only when it has that
many members; without ``keep`` they spare none. ``per`` and ``keep_by`` need ``keep`` or a
group condition (``keep_by``: ``keep``). The grouping itself is the planner's
(``_planner.py``); the rule's ``matches`` is the per-session part.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy_fields import as_list, parse_count, present

# Budgets: the rule-level keys that group a rule's matches and spare some of each group.
# Group key -> session field.
GROUP_KEYS = (
    ("user", "user"),
    ("database", "database"),
    ("application", "application"),
    ("client_address", "client_addr"),
)
KEEP_BY = ("most_recent", "oldest", "newest")
DEFAULT_KEEP_BY = "most_recent"
# Group conditions -> whether all or any member must hold it (pt-kill's --each-busy-time / --any-busy-time).
GROUP_CONDITIONS = (
    ("each_running_longer_than", all),
    ("any_running_longer_than", any),
)
# A group condition on the group's size (pt-kill's --query-count).
GROUP_SIZE_CONDITION = "group_size_at_least"
BUDGET_KEYS = ("per", "keep", "keep_by") + tuple(key for key, _how in GROUP_CONDITIONS) + (GROUP_SIZE_CONDITION,)

MAX_KEEP = 1000000


def _parse_group_keys(value, field):
    """`per`: one group key or a list of them, each at most once."""
    allowed = [key for key, _session_field in GROUP_KEYS]
    keys = []
    for index, item in enumerate(as_list(value, field, allow_empty=False)):
        item_field = f"{field}[{index}]" if isinstance(value, (list, tuple)) else field
        if item not in allowed:
            raise PolicyError(
                item_field, item, "invalid group key {} (allowed: {})".format(shown_value(item), ", ".join(allowed))
            )
        if item in keys:
            raise PolicyError(item_field, item, f"group key {shown_value(item)} is listed twice")
        keys.append(item)
    return tuple(keys)


class Budget:
    """A rule's budget: group its matches by `per`, take a group when its group conditions
    hold, spare `keep` of each (ranked by `keep_by`); the rest of the group are victims.

    `conditions`: {group condition key: seconds}; `keep` 0 spares none."""

    def __init__(self, per=(), keep=0, keep_by=DEFAULT_KEEP_BY, conditions=None, field=None, size_at_least=None):
        self.per = tuple(per)
        self.keep = keep
        self.keep_by = keep_by
        self.conditions = dict(conditions or {})
        self.size_at_least = size_at_least  # None, or the group_size_at_least a group must reach
        self.field = field  # policy.rules[N]
        fields = dict(GROUP_KEYS)
        self._fields = tuple((key, fields[key]) for key in self.per)

    @classmethod
    def parse(cls, raw, field):
        """The budget of a rule's raw mapping, or None when it sets none of BUDGET_KEYS."""
        if not any(present(raw, key) for key in BUDGET_KEYS):
            return None
        conditions = {}
        for key, _how in GROUP_CONDITIONS:
            if present(raw, key):
                conditions[key] = parse_duration(raw[key], f"{field}.{key}")
        size_at_least = None
        if present(raw, GROUP_SIZE_CONDITION):
            size_at_least = parse_count(
                raw[GROUP_SIZE_CONDITION], f"{field}.{GROUP_SIZE_CONDITION}", 1, MAX_KEEP, "sessions"
            )
        has_keep = present(raw, "keep")
        keep = parse_count(raw["keep"], field + ".keep", 0, MAX_KEEP, "sessions to keep") if has_keep else 0
        for key in ("per", "keep_by"):
            if present(raw, key) and not (has_keep or (key == "per" and (conditions or size_at_least))):
                needs = "keep" if key == "keep_by" else f"keep (or a group condition: {', '.join(BUDGET_KEYS[3:])})"
                raise PolicyError(
                    f"{field}.{key}",
                    raw[key],
                    f"{key} {shown_value(raw[key])} needs {needs}: say how many sessions of each group to spare",
                )
        per = _parse_group_keys(raw["per"], field + ".per") if present(raw, "per") else ()
        keep_by = DEFAULT_KEEP_BY
        if present(raw, "keep_by"):
            keep_by = raw["keep_by"]
            if keep_by not in KEEP_BY:
                raise PolicyError(
                    field + ".keep_by",
                    keep_by,
                    "invalid keep_by {} (allowed: {})".format(shown_value(keep_by), ", ".join(KEEP_BY)),
                )
        return cls(per, keep, keep_by, conditions, field, size_at_least)

    def group_of(self, session):
        """The session's group: a tuple of its values of the `per` fields."""
        return tuple(session.get(session_field) for _key, session_field in self._fields)

    def label(self, group):
        """A group as results show it: {group key: value}."""
        return dict(zip(self.per, group))

    def takes(self, members):
        """Whether a group's group conditions hold (each / any member runs a statement
        longer than the duration; a session not running one never counts as running) and the
        group has at least group_size_at_least members."""
        if self.size_at_least is not None and len(members) < self.size_at_least:
            return False
        for key, how in GROUP_CONDITIONS:
            if key in self.conditions:
                limit = self.conditions[key]
                if not how(_runs_longer(session, limit) for session in members):
                    return False
        return True

    def to_dict(self):
        result = {"keep": self.keep, "keep_by": self.keep_by}
        if self.per:
            result["per"] = list(self.per)
        result.update(self.conditions)
        if self.size_at_least is not None:
            result[GROUP_SIZE_CONDITION] = self.size_at_least
        return result


def _runs_longer(session, seconds):
    measured = session.get("query_seconds")
    return session.get("state") == "active" and measured is not None and measured > seconds
