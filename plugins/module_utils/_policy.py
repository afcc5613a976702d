# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse, validate and evaluate a session hygiene policy. Pure and engine-neutral.

The policy as a whole: its rules (``Rule``), ``Policy`` and ``parse_policy``. Its parts have
their own files: the conditions and ``protect`` (``_conditions.py``), a rule's budget
(``_budgets.py``), the limits per host (``_limits.py``), the checks of one field
(``_policy_fields.py``), durations (``_durations.py``); ``PolicyError`` is ``_errors.py``'s.

Private to the collection. Standard library only, no Ansible import: a module
(on the target) and an action plugin (on the controller) share it.

``parse_policy(raw)`` turns the ``policy`` option (a dict, or a string holding
the JSON or YAML of that dict, see docs/architecture.md) into a :class:`Policy`, or raises
:class:`PolicyError` naming the field and the value. Everything is checked
before any connection is opened.

Input conventions
-----------------
* ``None`` anywhere means "not set" (Ansible fills absent suboptions with None).
* Where a list is expected (``states``, ``users``, ``databases``,
  ``applications``, ``client_addresses``) a single string is accepted as a
  one-element list: ``users: bob`` is ``users: [bob]``.
* An explicitly *empty* list inside a rule or ``except`` is an error: it would
  match nothing, and silently dropping it would widen the rule (think of a
  templated list that came out empty). In ``protect`` an empty list is fine.
* A string policy is parsed once: JSON first, then YAML with the safe loader
  (PyYAML, imported only then; without it only JSON is accepted and the
  message says so). It must hold a mapping; at most ``MAX_POLICY_TEXT``
  characters.
* Durations: ``_durations.parse_duration`` (``45s``, ``30m``, ``1h30m``, ``2d`` or a whole
  number of seconds; at most ``MAX_DURATION``, 366 days; ``grace``: ``MAX_GRACE``, 1 hour).
* Globs are fnmatch-style (``*``, ``?``, ``[seq]``, ``[!seq]``) and
  case-sensitive; ``[[]`` matches a literal ``[``. Nothing else is special, so
  quotes, ``%``, ``;`` and the like match literally. A ``None`` session field is
  matched as the empty string (``*`` matches it, ``app*`` does not).
* ``client_addresses`` take IP addresses and networks (host bits allowed:
  ``10.1.2.3/16`` is ``10.1.0.0/16``) or the token ``local``, which matches a
  local (unix socket) connection, i.e. ``client_addr`` None. IPv4-mapped IPv6
  client addresses (``::ffff:10.1.2.3``) also match IPv4 networks.
* ``*_longer_than`` conditions compare strictly (``idle_seconds > value``); a
  ``None`` measurement never matches. ``running_longer_than`` only matches
  sessions whose state is ``active``. ``query_matches`` is ``re.search`` on the
  (truncated) query text; a ``None`` query never matches. A pattern is at most
  ``MAX_PATTERN_LENGTH`` characters, and any compile failure (including
  OverflowError, RecursionError) is a PolicyError. A regex search can take
  exponential time (``(a+)+$``), so the planner runs the matching of a policy
  with ``needs_bounded_matching`` in a child process with a hard deadline
  (``_planner.py``); ``Policy.match`` itself is not bounded.
* Lock conditions: ``waiting_longer_than`` compares ``lock_wait_seconds``
  strictly (a session not waiting never matches). ``blocking_longer_than`` and
  ``blocking_at_least`` only match a *root blocker*: a session that waits on
  nothing (``blocked_by`` empty or absent) and has sessions waiting behind it;
  then ``blocking_seconds > value`` / ``blocking >= value``. ``blocking_at_least``
  is a whole number from 1 to ``MAX_BLOCKING_AT_LEAST``. A session in a wait
  cycle waits itself, so it is never a root blocker (the engine resolves a
  deadlock). The lock fields are set by the driver and ``_planner.annotate_locks``;
  a record without them is treated as not waiting and blocking nobody.
* A rule matches when ALL its conditions hold, unless the session also matches
  ALL conditions of the rule's ``except``. ``Policy.match`` returns the first
  rule (in policy order) that matches.
* Budgets (docs/architecture.md "Groups and budgets"): a rule with ``keep`` or a group
  condition groups the sessions it matches and spares some of each group (``_budgets.py``).
* Errors name fields with 0-based rule indexes: ``policy.rules[1].grace``.
  Values are quoted cut short (``_messages.shown_value``): a message stays a few hundred
  characters whatever the size of the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import sys

from ansible_collections.dbhygiene.sessions.plugins.module_utils._budgets import BUDGET_KEYS, Budget
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import (
    CONDITION_KEYS,
    GLOB_CONDITIONS,
    Conditions,
    Protect,
    parse_addresses,
    parse_globs,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import MAX_GRACE, parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._limits import parse_limits
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut_line, shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy_fields import (
    check_keys,
    parse_bool,
    parse_name,
    present,
)

ACTIONS = ("terminate", "cancel", "cancel_then_terminate")
DEFAULT_ACTION = "terminate"
# policy.grace when the policy sets none, in seconds: how long cancel_then_terminate waits
# after the cancel. (Not the drain's grace: a change window's `grace` defaults to "30s",
# _drain_request.DEFAULT_DRAIN_GRACE.)
DEFAULT_POLICY_GRACE_SECONDS = 10
DEFAULT_POLICY_NAME = "unnamed"

EXCEPT_KEY = "except"

POLICY_KEYS = ("name", "action", "grace", "rules", "protect", "limits")
RULE_KEYS = ("name", "action") + CONDITION_KEYS + BUDGET_KEYS + (EXCEPT_KEY,)
PROTECT_KEYS = GLOB_CONDITIONS + ("client_addresses", "superusers")

MAX_POLICY_TEXT = 1000000


def _parse_action(value, field):
    if value not in ACTIONS:
        raise PolicyError(
            field, value, "invalid action {} (allowed: {})".format(shown_value(value), ", ".join(ACTIONS))
        )
    return value


class Rule:
    """One rule: a name, an effective action, conditions and an optional except."""

    def __init__(self, name, action, conditions, exceptions=None, action_overridden=False, field=None, budget=None):
        self.field = field  # policy.rules[N]
        self.name = name
        self.action = action
        self.conditions = conditions
        self.exceptions = exceptions
        self.action_overridden = action_overridden
        self.budget = budget  # a Budget, or None: every session the rule matches is a victim

    @property
    def conditions_used(self):
        used = set(self.conditions.keys)
        if self.exceptions is not None:
            used |= self.exceptions.keys
        return used

    @property
    def unbounded(self):
        return self.conditions.unbounded or (self.exceptions is not None and self.exceptions.unbounded)

    @property
    def requires_lock_wait(self):
        """Whether every session this rule matches waits on a lock (waiting_longer_than):
        the guarded kill then also checks it still waits."""
        return "waiting_longer_than" in self.conditions.values

    def slow_field(self):
        """The field to name when matching this rule took too long: its query_matches, if any."""
        for part in (self.conditions, self.exceptions):
            if part is not None and "query_matches" in part.values:
                return f"{part.field}.query_matches", part.values["query_matches"].pattern
        return self.field, self.name

    def matches(self, session):
        if not self.conditions.holds(session):
            return False
        return self.exceptions is None or not self.exceptions.holds(session)

    def to_dict(self):
        result = {"name": self.name, "action": self.action}
        result.update(self.conditions.to_dict())
        if self.budget is not None:
            result.update(self.budget.to_dict())
        if self.exceptions is not None:
            result[EXCEPT_KEY] = self.exceptions.to_dict()
        return result


class Policy:
    """A validated policy. Build it with parse_policy()."""

    def __init__(self, name, action, grace, rules, protect, limits):
        self.name = name
        self.action = action
        self.grace = grace
        self.rules = rules
        self.protect = protect
        self.limits = limits

    @property
    def needs_bounded_matching(self):
        """Whether matching may take more than linear time (a regex, or globs on old Pythons):
        the planner then matches in a child process with a deadline."""
        return self.protect.unbounded or any(rule.unbounded for rule in self.rules)

    def conditions_used(self):
        """Every condition key any rule (or its except) uses."""
        used = set()
        for rule in self.rules:
            used |= rule.conditions_used
        return used

    def match(self, session):
        """The first rule that matches the session, or None."""
        for rule in self.rules:
            if rule.matches(session):
                return rule
        return None

    def to_dict(self):
        """The normalized policy as plain JSON-serializable data."""
        return {
            "name": self.name,
            "action": self.action,
            "grace": self.grace,
            "rules": [rule.to_dict() for rule in self.rules],
            "protect": self.protect.to_dict(),
            "limits": self.limits.to_dict(),
        }


def _parse_rule(raw, index, policy_action):
    field = f"policy.rules[{index}]"
    check_keys(raw, RULE_KEYS, field)
    name = parse_name(raw.get("name"), field + ".name", f"rule-{index}")
    overridden = present(raw, "action")
    action = _parse_action(raw["action"], field + ".action") if overridden else policy_action
    conditions = Conditions.parse(raw, field)
    budget = Budget.parse(raw, field)
    if not conditions.values and budget is None:
        raise PolicyError(
            field,
            name,
            "rule {} has no condition and would match every session; give it at least one of {}, or a budget "
            "(keep)".format(shown_value(name), ", ".join(CONDITION_KEYS)),
        )
    exceptions = None
    if raw.get(EXCEPT_KEY) is not None:
        except_field = f"{field}.{EXCEPT_KEY}"
        check_keys(raw[EXCEPT_KEY], CONDITION_KEYS, except_field)
        exceptions = Conditions.parse(raw[EXCEPT_KEY], except_field)
        if not exceptions.values:
            raise PolicyError(
                except_field,
                raw[EXCEPT_KEY],
                "except needs at least one of {} (or leave it out)".format(", ".join(CONDITION_KEYS)),
            )
    return Rule(name, action, conditions, exceptions, overridden, field, budget)


def _parse_protect(raw):
    field = "policy.protect"
    if raw is None:
        return Protect()
    check_keys(raw, PROTECT_KEYS, field)
    lists = {}
    for key in GLOB_CONDITIONS:
        lists[key] = ()
        if present(raw, key):
            lists[key] = parse_globs(raw[key], f"{field}.{key}", allow_empty=True)
    addresses = ()
    if present(raw, "client_addresses"):
        addresses = parse_addresses(raw["client_addresses"], field + ".client_addresses", allow_empty=True)
    superusers = True
    if present(raw, "superusers"):
        superusers = parse_bool(raw["superusers"], field + ".superusers")
    return Protect(
        users=lists["users"],
        applications=lists["applications"],
        databases=lists["databases"],
        client_addresses=addresses,
        superusers=superusers,
    )


def _import_yaml():
    try:
        import yaml  # pylint: disable=import-outside-toplevel  # only for a policy given as YAML text
    except ImportError:
        return None
    return yaml


def _load_policy_text(text):
    """The mapping a policy string holds: JSON, else YAML (safe loader). Parsed once."""
    if not text.strip():
        raise PolicyError("policy", text, "empty string: give the policy as a mapping, or as its JSON or YAML")
    if len(text) > MAX_POLICY_TEXT:
        raise PolicyError(
            "policy", text, f"a policy string of {len(text)} characters is longer than {MAX_POLICY_TEXT} characters"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        json_problem = cut_line(f"{type(exc).__name__}: {exc}") if isinstance(exc, RecursionError) else cut_line(exc)
    yaml = _import_yaml()
    if yaml is None:
        raise PolicyError(
            "policy",
            text,
            f"the string {shown_value(text)} is not valid JSON ({json_problem}), and YAML cannot be read here: "
            f"PyYAML is missing from {sys.executable} (pip install PyYAML, or give the policy as JSON or a mapping)",
        )
    try:
        return yaml.safe_load(text)
    # yaml.YAMLError, and RecursionError for deep nesting.
    except Exception as exc:  # pylint: disable=broad-exception-caught
        problem = cut_line(f"{type(exc).__name__}: {exc}")
        raise PolicyError(
            "policy", text, f"the string {shown_value(text)} is neither JSON nor YAML of a mapping ({problem})"
        )


def parse_policy(raw):
    """Validate the ``policy`` option (a mapping, or a string holding its JSON or YAML)
    and return a Policy; raise PolicyError otherwise."""
    if raw is None:
        raise PolicyError("policy", raw, "a policy is required (a mapping with at least one rule)")
    if isinstance(raw, str):
        text, raw = raw, _load_policy_text(raw)
        if raw is None:
            raise PolicyError("policy", text, "the string holds no policy (null); expected a mapping with rules")
    check_keys(raw, POLICY_KEYS, "policy")
    name = parse_name(raw.get("name"), "policy.name", DEFAULT_POLICY_NAME)
    action = _parse_action(raw["action"], "policy.action") if present(raw, "action") else DEFAULT_ACTION
    grace = DEFAULT_POLICY_GRACE_SECONDS
    if present(raw, "grace"):
        grace = parse_duration(raw["grace"], "policy.grace", MAX_GRACE)

    raw_rules = raw.get("rules")
    if raw_rules is None or (isinstance(raw_rules, (list, tuple)) and not raw_rules):
        raise PolicyError("policy.rules", raw_rules, "at least one rule is required")
    if not isinstance(raw_rules, (list, tuple)):
        raise PolicyError("policy.rules", raw_rules, f"expected a list of rules, got {shown_value(raw_rules)}")
    rules = []
    seen_names = {}
    for index, raw_rule in enumerate(raw_rules):
        rule = _parse_rule(raw_rule, index, action)
        if rule.name in seen_names:
            raise PolicyError(
                f"policy.rules[{index}].name",
                rule.name,
                f"duplicate rule name {shown_value(rule.name)} (also policy.rules[{seen_names[rule.name]}]); "
                "rule names must be unique",
            )
        seen_names[rule.name] = index
        rules.append(rule)

    return Policy(
        name=name,
        action=action,
        grace=grace,
        rules=rules,
        protect=_parse_protect(raw.get("protect")),
        limits=parse_limits(raw.get("limits")),
    )
