# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse, validate and evaluate a session hygiene policy. Pure and engine-neutral.

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
* Durations: ``45s``, ``30m``, ``1h30m``, ``2d``, ``1d2h3m4s`` (units d, h, m, s
  at most once each, in that order) or a whole number of seconds (an int, a
  float without fraction such as ``30.0``, or a digit string). Surrounding
  blanks are ignored. Refused: booleans, negatives, fractions of a second,
  ``nan`` / ``inf``, and anything above ``MAX_DURATION`` (366 days; ``grace``:
  ``MAX_GRACE``, 1 hour).
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
* Budgets (docs/architecture.md "Groups and budgets"): a rule with ``keep`` (a whole
  number of sessions, 0 to ``MAX_KEEP``) groups the sessions it matches by ``per``
  (one or a list of ``GROUP_KEYS``; none: the host as one group) and spares ``keep``
  of each group, ranked by ``keep_by`` (``KEEP_BY``). The group conditions
  ``each_running_longer_than`` / ``any_running_longer_than`` (pt-kill's
  ``--each-busy-time`` / ``--any-busy-time``) take a group only when each / any of
  its members runs a statement for longer than the duration, ``group_size_at_least``
  (``--query-count``) only when it has that many members; without ``keep`` they
  spare none. ``per`` and ``keep_by`` need ``keep`` or a group condition (``keep_by``:
  ``keep``). The grouping itself is the planner's (``_planner.py``); the rule's
  ``matches`` is the per-session part.
* Errors name fields with 0-based rule indexes: ``policy.rules[1].grace``.
  Values are quoted cut short (``_messages.shown_value``): a message stays a few hundred
  characters whatever the size of the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import ipaddress
import json
import math
import re
import sys

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import STATES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut_line, shown_value

ACTIONS = ("terminate", "cancel", "cancel_then_terminate")
DEFAULT_ACTION = "terminate"
# policy.grace when the policy sets none, in seconds: how long cancel_then_terminate waits
# after the cancel. (Not the drain's grace: a change window's `grace` defaults to "30s",
# _drain.DEFAULT_GRACE.)
DEFAULT_POLICY_GRACE_SECONDS = 10
DEFAULT_POLICY_NAME = "unnamed"
# Limits per host of a policy that sets none (docs/architecture.md, "Dry runs in the open"):
# a rule written too broadly cannot end every session of a fleet. A policy
# raises one with a number, or lifts it with UNLIMITED; null (or leaving it out) is the default.
DEFAULT_LIMITS = {"max_terminations": 100, "max_fraction": 0.9}
UNLIMITED = "unlimited"
LOCAL = "local"

GLOB_CONDITIONS = ("users", "databases", "applications")
DURATION_CONDITIONS = (
    "idle_longer_than",
    "running_longer_than",
    "transaction_longer_than",
    "connected_longer_than",
)
# Lock-aware conditions (docs/architecture.md "Locks"): they read the lock fields of a record
# (`lock_wait_seconds` from the driver, `blocking` / `blocking_seconds` from
# _planner.annotate_locks). A record without them is not waiting and blocks nobody.
LOCK_DURATION_CONDITIONS = ("waiting_longer_than", "blocking_longer_than")
LOCK_COUNT_CONDITIONS = ("blocking_at_least",)
LOCK_CONDITIONS = LOCK_DURATION_CONDITIONS + LOCK_COUNT_CONDITIONS
CONDITION_KEYS = (
    ("states",) + GLOB_CONDITIONS + ("client_addresses",) + DURATION_CONDITIONS + ("query_matches",) + LOCK_CONDITIONS
)
EXCEPT_KEY = "except"
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

POLICY_KEYS = ("name", "action", "grace", "rules", "protect", "limits")
RULE_KEYS = ("name", "action") + CONDITION_KEYS + BUDGET_KEYS + (EXCEPT_KEY,)
PROTECT_KEYS = GLOB_CONDITIONS + ("client_addresses", "superusers")
LIMIT_KEYS = ("max_terminations", "max_fraction")

# Session field each glob condition looks at.
_GLOB_FIELDS = (("users", "user"), ("databases", "database"), ("applications", "application"))
# Session field each duration condition compares.
_DURATION_FIELDS = (
    ("idle_longer_than", "idle_seconds"),
    ("running_longer_than", "query_seconds"),
    ("transaction_longer_than", "transaction_seconds"),
    ("connected_longer_than", "connected_seconds"),
)

# Upper bounds: a condition older than a year is a typo, and grace is a wait of the
# module itself (bounded again by the run's own deadlines).
MAX_DURATION = 366 * 86400
MAX_GRACE = 3600
MAX_PATTERN_LENGTH = 1000
# blocking_at_least: more waiters than this behind one session is a typo (no server
# has that many connections).
MAX_BLOCKING_AT_LEAST = 1000000
# keep: more sessions than this in one group is a typo, as above.
MAX_KEEP = 1000000
MAX_NAME_LENGTH = 200
MAX_POLICY_TEXT = 1000000
# Longest duration text worth reading ("1d23h59m59s" is 11): longer is refused
# before int() sees it (Python 3.11+ refuses int() of 4,300+ digits with a ValueError).
_DURATION_TEXT_MAX = 40
_DURATION_HINT = "use 45s, 30m, 1h30m, 2d or a whole number of seconds"
_DURATION_RE = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?\Z")
_SECONDS_RE = re.compile(r"^[0-9]+\Z")
_DURATION_UNITS = (86400, 3600, 60, 1)
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


class PolicyError(ValueError):
    """An invalid policy. ``field`` is where (``policy.rules[0].idle_longer_than``),
    ``value`` the offending value, str() says both and what is allowed."""

    def __init__(self, field, value, problem):
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _key_name(key):
    """A mapping key as written in a field name: plain when short text, else quoted and cut."""
    if isinstance(key, str) and 0 < len(key) <= 40 and key.isprintable() and " " not in key:
        return key
    return shown_value(key, 30)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _human_duration(seconds):
    parts = []
    for unit, name in zip(_DURATION_UNITS, "dhms"):
        if seconds >= unit or (unit == 1 and not parts):
            parts.append(f"{seconds // unit}{name}")
            seconds %= unit
    return "".join(parts)


def _duration_seconds(value):
    """Seconds from a duration value, or (None, why not) when it is not one."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, "a duration must be a finite number of seconds"
        if value != int(value):
            return None, "fractions of a second are not allowed"
        value = int(value)
    if _is_int(value):
        if value < 0:
            return None, "negative durations are not allowed"
        return value, None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _DURATION_TEXT_MAX:
            return None, f"longer than {_DURATION_TEXT_MAX} characters"
        if _SECONDS_RE.match(text):
            return int(text), None
        found = _DURATION_RE.match(text)
        if text and found and any(found.groups()):
            parts = zip(found.groups(), _DURATION_UNITS)
            return sum(int(part) * unit for part, unit in parts if part is not None), None
    return None, None


def parse_duration(value, field, maximum=MAX_DURATION):
    """Seconds (int, 0 to ``maximum``) from ``30m``-style text or a whole number of seconds."""
    seconds, why = _duration_seconds(value)
    if seconds is None:
        hint = f"{_DURATION_HINT}; {why}" if why else _DURATION_HINT
        raise PolicyError(field, value, f"invalid duration {shown_value(value)} ({hint})")
    if seconds > maximum:
        raise PolicyError(
            field,
            value,
            f"duration {shown_value(value)} is above the maximum for this field, "
            f"{_human_duration(maximum)} ({maximum} seconds)",
        )
    return seconds


def _check_keys(raw, allowed, field):
    if not isinstance(raw, dict):
        raise PolicyError(
            field, raw, "expected a mapping with keys {}, got {}".format(", ".join(allowed), shown_value(raw, 40))
        )
    for key in raw:
        if key not in allowed:
            raise PolicyError(
                f"{field}.{_key_name(key)}",
                key,
                "unknown key {} (allowed: {})".format(shown_value(key, 20), ", ".join(allowed)),
            )


def _present(raw, key):
    return raw.get(key) is not None


def _as_list(value, field, allow_empty):
    """A list from a list, or a single string as a one-element list."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise PolicyError(field, value, f"expected a list (or a single string), got {shown_value(value)}")
    if not value and not allow_empty:
        raise PolicyError(
            field,
            value,
            "empty list: it would match nothing; remove the condition or list at least one value",
        )
    return list(value)


def _scalar_text(value, field):
    """A list element as text. Ints are accepted (a numeric user name in YAML)."""
    if isinstance(value, str):
        return value
    if _is_int(value):
        return str(value)
    raise PolicyError(field, value, f"expected a string, got {shown_value(value)}")


def _check_glob(pattern, field):
    """Reject a '[' that never closes: fnmatch would quietly take it literally."""
    i, end = 0, len(pattern)
    while i < end:
        if pattern[i] == "[":
            j = i + 1
            if j < end and pattern[j] == "!":
                j += 1
            if j < end and pattern[j] == "]":
                j += 1
            while j < end and pattern[j] != "]":
                j += 1
            if j >= end:
                raise PolicyError(
                    field,
                    pattern,
                    f"invalid glob {shown_value(pattern)} (unbalanced '['; write [[] for a literal '[')",
                )
            i = j
        i += 1
    return pattern


def _parse_globs(value, field, allow_empty):
    items = _as_list(value, field, allow_empty)
    globs = []
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        globs.append(_check_glob(_scalar_text(item, item_field), item_field))
    return tuple(globs)


def _parse_addresses(value, field, allow_empty):
    items = _as_list(value, field, allow_empty)
    entries = []
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        text = _scalar_text(item, item_field).strip()
        if text.lower() == LOCAL:
            entries.append(LOCAL)
            continue
        try:
            entries.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise PolicyError(
                item_field,
                item,
                f"invalid IP address or network {shown_value(item)} "
                "(use an IP such as 10.0.0.5, a CIDR such as 10.0.0.0/8, or local for unix-socket connections)",
            )
    return tuple(entries)


def _parse_states(value, field):
    items = _as_list(value, field, allow_empty=False)
    states = []
    for index, item in enumerate(items):
        if item not in STATES:
            raise PolicyError(
                f"{field}[{index}]",
                item,
                "invalid state {} (allowed: {})".format(shown_value(item), ", ".join(STATES)),
            )
        states.append(item)
    return frozenset(states)


def _parse_regex(value, field):
    if not isinstance(value, str):
        raise PolicyError(field, value, f"expected a regular expression string, got {shown_value(value)}")
    if len(value) > MAX_PATTERN_LENGTH:
        raise PolicyError(
            field,
            value,
            f"regular expression {shown_value(value)} is longer than {MAX_PATTERN_LENGTH} characters",
        )
    try:
        return re.compile(value)
    except re.error as exc:
        raise PolicyError(field, value, f"invalid regular expression {shown_value(value)} ({cut_line(str(exc))})")
    # Not only re.error: 'a{99999999999}' raises OverflowError, 500 nested groups RecursionError.
    except Exception as exc:  # pylint: disable=broad-exception-caught
        problem = cut_line(f"{type(exc).__name__}: {exc}")
        raise PolicyError(field, value, f"regular expression {shown_value(value)} cannot be compiled ({problem})")


def _parse_action(value, field):
    if value not in ACTIONS:
        raise PolicyError(
            field, value, "invalid action {} (allowed: {})".format(shown_value(value), ", ".join(ACTIONS))
        )
    return value


def _parse_bool(value, field):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise PolicyError(field, value, f"expected a boolean (true or false), got {shown_value(value)}")


def _parse_name(value, field, default):
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise PolicyError(field, value, f"expected a string, got {shown_value(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise PolicyError(field, value, f"name {shown_value(value)} is longer than {MAX_NAME_LENGTH} characters")
    return value


def _parse_max_terminations(value, field):
    number = None
    if _is_int(value):
        number = value
    elif isinstance(value, str) and len(value) <= _DURATION_TEXT_MAX and _SECONDS_RE.match(value.strip()):
        number = int(value.strip())
    if number is None or number < 0:
        raise PolicyError(field, value, f"expected a whole number >= 0 or {UNLIMITED!r}, got {shown_value(value)}")
    return number


def _parse_count(value, field, low, high, what):
    """A whole number from `low` to `high` (30.0 from a template is 30), or a PolicyError."""
    number = None
    if _is_int(value):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        number = int(value)
    elif isinstance(value, str) and len(value) <= _DURATION_TEXT_MAX and _SECONDS_RE.match(value.strip()):
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise PolicyError(
            field, value, f"expected a whole number of {what} from {low} to {high}, got {shown_value(value)}"
        )
    return number


def _parse_blocking_at_least(value, field):
    return _parse_count(value, field, 1, MAX_BLOCKING_AT_LEAST, "waiting sessions")


def _is_root_blocker(session):
    """Waits on nothing and has sessions waiting behind it (see _planner.annotate_locks)."""
    if session.get("blocked_by"):
        return False
    blocking = session.get("blocking")
    return _is_int(blocking) and blocking > 0


def _parse_max_fraction(value, field):
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int of 400 digits
            number = None
    elif isinstance(value, str) and len(value) <= _DURATION_TEXT_MAX:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or math.isnan(number) or not 0 < number <= 1:
        raise PolicyError(
            field,
            value,
            f"expected a fraction above 0 and at most 1 (e.g. 0.5 for half) or {UNLIMITED!r}, got {shown_value(value)}",
        )
    return number


def _addr_matches(client_addr, entries):
    """Whether a session's client address is covered by any entry.

    Returns True/False, or None when the address is not an IP (and so cannot
    be placed in or out of a network)."""
    if client_addr is None or client_addr == "":
        return LOCAL in entries
    networks = [entry for entry in entries if entry != LOCAL]
    if not networks:
        return False
    text = str(client_addr).strip()
    if "%" in text:  # IPv6 zone id (fe80::1%eth0): not part of the address
        text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_interface(text).ip
    except ValueError:
        return None
    candidates = [address]
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        candidates.append(mapped)
    return any(candidate in network for candidate in candidates for network in networks)


def _glob_can_backtrack(pattern):
    # fnmatch before Python 3.9 (bpo-40480) turns each * into .*: with several of them a
    # non-matching name backtracks polynomially (8 stars, 40 characters: 0.6 s).
    return sys.version_info < (3, 9) and pattern.count("*") > 1


def _glob_matches(value, globs):
    text = "" if value is None else str(value)
    for pattern in globs:
        if fnmatch.fnmatchcase(text, pattern):
            return pattern
    return None


class Conditions:
    """A set of conditions that must ALL hold (a rule body, or its ``except``)."""

    def __init__(self, values, field=None):
        # values: {condition key: parsed value}, only for the conditions set.
        self.values = values
        self.field = field  # policy.rules[0] or policy.rules[0].except

    @classmethod
    def parse(cls, raw, field):
        values = {}
        if _present(raw, "states"):
            values["states"] = _parse_states(raw["states"], field + ".states")
        for key in GLOB_CONDITIONS:
            if _present(raw, key):
                values[key] = _parse_globs(raw[key], f"{field}.{key}", allow_empty=False)
        if _present(raw, "client_addresses"):
            values["client_addresses"] = _parse_addresses(
                raw["client_addresses"], field + ".client_addresses", allow_empty=False
            )
        for key in DURATION_CONDITIONS:
            if _present(raw, key):
                values[key] = parse_duration(raw[key], f"{field}.{key}")
        if _present(raw, "query_matches"):
            values["query_matches"] = _parse_regex(raw["query_matches"], field + ".query_matches")
        for key in LOCK_DURATION_CONDITIONS:
            if _present(raw, key):
                values[key] = parse_duration(raw[key], f"{field}.{key}")
        if _present(raw, "blocking_at_least"):
            values["blocking_at_least"] = _parse_blocking_at_least(
                raw["blocking_at_least"], field + ".blocking_at_least"
            )
        return cls(values, field)

    @property
    def unbounded(self):
        """Whether matching these conditions can take more than linear time."""
        if "query_matches" in self.values:
            return True
        return any(_glob_can_backtrack(glob) for key in GLOB_CONDITIONS for glob in self.values.get(key, ()))

    @property
    def keys(self):
        return frozenset(self.values)

    def holds(self, session):
        values = self.values
        if "states" in values and session.get("state") not in values["states"]:
            return False
        for key, session_field in _GLOB_FIELDS:
            if key in values and _glob_matches(session.get(session_field), values[key]) is None:
                return False
        if "client_addresses" in values and not _addr_matches(session.get("client_addr"), values["client_addresses"]):
            return False
        for key, session_field in _DURATION_FIELDS:
            if key in values:
                measured = session.get(session_field)
                if measured is None or not measured > values[key]:
                    return False
        if "running_longer_than" in values and session.get("state") != "active":
            return False
        if "query_matches" in values:
            query = session.get("query")
            if query is None or values["query_matches"].search(query) is None:
                return False
        if "waiting_longer_than" in values:
            waited = session.get("lock_wait_seconds")
            if waited is None or not waited > values["waiting_longer_than"]:
                return False
        if "blocking_longer_than" in values or "blocking_at_least" in values:
            if not _is_root_blocker(session):
                return False
            if "blocking_longer_than" in values:
                longest = session.get("blocking_seconds")
                if longest is None or not longest > values["blocking_longer_than"]:
                    return False
            if "blocking_at_least" in values and not session["blocking"] >= values["blocking_at_least"]:
                return False
        return True

    def to_dict(self):
        result = {}
        for key in CONDITION_KEYS:
            if key not in self.values:
                continue
            value = self.values[key]
            if key == "states":
                value = [state for state in STATES if state in value]
            elif key == "client_addresses":
                value = [str(entry) for entry in value]
            elif key == "query_matches":
                value = value.pattern
            elif isinstance(value, tuple):
                value = list(value)
            result[key] = value
        return result


def _parse_group_keys(value, field):
    """`per`: one group key or a list of them, each at most once."""
    allowed = [key for key, _session_field in GROUP_KEYS]
    keys = []
    for index, item in enumerate(_as_list(value, field, allow_empty=False)):
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
        if not any(_present(raw, key) for key in BUDGET_KEYS):
            return None
        conditions = {}
        for key, _how in GROUP_CONDITIONS:
            if _present(raw, key):
                conditions[key] = parse_duration(raw[key], f"{field}.{key}")
        size_at_least = None
        if _present(raw, GROUP_SIZE_CONDITION):
            size_at_least = _parse_count(
                raw[GROUP_SIZE_CONDITION], f"{field}.{GROUP_SIZE_CONDITION}", 1, MAX_KEEP, "sessions"
            )
        has_keep = _present(raw, "keep")
        keep = _parse_count(raw["keep"], field + ".keep", 0, MAX_KEEP, "sessions to keep") if has_keep else 0
        for key in ("per", "keep_by"):
            if _present(raw, key) and not (has_keep or (key == "per" and (conditions or size_at_least))):
                needs = "keep" if key == "keep_by" else f"keep (or a group condition: {', '.join(BUDGET_KEYS[3:])})"
                raise PolicyError(
                    f"{field}.{key}",
                    raw[key],
                    f"{key} {shown_value(raw[key])} needs {needs}: say how many sessions of each group to spare",
                )
        per = _parse_group_keys(raw["per"], field + ".per") if _present(raw, "per") else ()
        keep_by = DEFAULT_KEEP_BY
        if _present(raw, "keep_by"):
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


class Protect:
    """Sessions never touched, whatever the rules say."""

    def __init__(self, users=(), applications=(), databases=(), client_addresses=(), superusers=True):
        self.users = tuple(users)
        self.applications = tuple(applications)
        self.databases = tuple(databases)
        self.client_addresses = tuple(client_addresses)
        self.superusers = superusers

    @property
    def unbounded(self):
        return any(_glob_can_backtrack(glob) for glob in self.users + self.applications + self.databases)

    def protects(self, session):
        """The reason a session is protected, or None."""
        if session.get("service"):
            # The managed service's own session (RDS rdsadmin, ...): never, whatever protect says.
            return f"service: the managed service's own session (user {shown_value(session.get('user'))})"
        if self.superusers and session.get("superuser"):
            return "superuser"
        for key, session_field in (("users", "user"), ("applications", "application"), ("databases", "database")):
            pattern = _glob_matches(session.get(session_field), getattr(self, key))
            if pattern is not None:
                return f"protect.{key} matches {shown_value(pattern)}"
        if self.client_addresses:
            client_addr = session.get("client_addr")
            for entry in self.client_addresses:
                found = _addr_matches(client_addr, (entry,))
                if found:
                    return f"protect.client_addresses matches {shown_value(str(entry))}"
                if found is None:
                    # Fail closed: an address we cannot read might be inside a protected network.
                    return (
                        f"client address {shown_value(str(client_addr))} is not an IP address, "
                        "protect.client_addresses cannot rule it out"
                    )
        return None

    def to_dict(self):
        return {
            "users": list(self.users),
            "applications": list(self.applications),
            "databases": list(self.databases),
            "client_addresses": [str(entry) for entry in self.client_addresses],
            "superusers": self.superusers,
        }


class Limits:
    """Fail-closed limits per host; None means lifted (the policy said UNLIMITED).

    `defaults`: the names (of LIMIT_KEYS) that the policy left to DEFAULT_LIMITS."""

    def __init__(self, max_terminations=None, max_fraction=None, defaults=()):
        self.max_terminations = max_terminations
        self.max_fraction = max_fraction
        self.defaults = tuple(defaults)

    def to_dict(self):
        """The limits in effect; a lifted one as UNLIMITED (so the mapping parses back to the same limits)."""
        return {name: UNLIMITED if getattr(self, name) is None else getattr(self, name) for name in LIMIT_KEYS}

    def shown(self):
        """The limits in effect and which of them are the defaults (results and reports)."""
        return dict(self.to_dict(), defaults=list(self.defaults))


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
    _check_keys(raw, RULE_KEYS, field)
    name = _parse_name(raw.get("name"), field + ".name", f"rule-{index}")
    overridden = _present(raw, "action")
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
        _check_keys(raw[EXCEPT_KEY], CONDITION_KEYS, except_field)
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
    _check_keys(raw, PROTECT_KEYS, field)
    lists = {}
    for key in GLOB_CONDITIONS:
        lists[key] = ()
        if _present(raw, key):
            lists[key] = _parse_globs(raw[key], f"{field}.{key}", allow_empty=True)
    addresses = ()
    if _present(raw, "client_addresses"):
        addresses = _parse_addresses(raw["client_addresses"], field + ".client_addresses", allow_empty=True)
    superusers = True
    if _present(raw, "superusers"):
        superusers = _parse_bool(raw["superusers"], field + ".superusers")
    return Protect(
        users=lists["users"],
        applications=lists["applications"],
        databases=lists["databases"],
        client_addresses=addresses,
        superusers=superusers,
    )


def _parse_limits(raw):
    field = "policy.limits"
    if raw is None:
        raw = {}
    _check_keys(raw, LIMIT_KEYS, field)
    parsers = {"max_terminations": _parse_max_terminations, "max_fraction": _parse_max_fraction}
    values = {}
    defaults = []
    for name in LIMIT_KEYS:
        value = raw.get(name)
        if value is None:
            values[name] = DEFAULT_LIMITS[name]
            defaults.append(name)
        elif isinstance(value, str) and value.strip() == UNLIMITED:
            values[name] = None
        else:
            values[name] = parsers[name](value, f"{field}.{name}")
    return Limits(defaults=defaults, **values)


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
    _check_keys(raw, POLICY_KEYS, "policy")
    name = _parse_name(raw.get("name"), "policy.name", DEFAULT_POLICY_NAME)
    action = _parse_action(raw["action"], "policy.action") if _present(raw, "action") else DEFAULT_ACTION
    grace = DEFAULT_POLICY_GRACE_SECONDS
    if _present(raw, "grace"):
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
        limits=_parse_limits(raw.get("limits")),
    )
