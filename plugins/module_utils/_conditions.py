# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The conditions of a rule (and of its ``except``) and the policy's ``protect``: how each
reads its value and how it matches a session record. Pure, Python 3.8.

See ``_policy.py`` for the policy as a whole (globs, client addresses, durations, regexes and
the lock conditions, as a policy author writes them); ``Conditions`` is a set of conditions
that must ALL hold, ``Protect`` says why a session is never touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import ipaddress
import re
import sys

from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import STATES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import is_int, parse_duration
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import cut_line, shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy_fields import (
    as_list,
    parse_count,
    present,
    scalar_text,
)

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

# Session field each glob condition looks at.
_GLOB_FIELDS = (("users", "user"), ("databases", "database"), ("applications", "application"))
# Session field each duration condition compares.
_DURATION_FIELDS = (
    ("idle_longer_than", "idle_seconds"),
    ("running_longer_than", "query_seconds"),
    ("transaction_longer_than", "transaction_seconds"),
    ("connected_longer_than", "connected_seconds"),
)

MAX_PATTERN_LENGTH = 1000
# blocking_at_least: more waiters than this behind one session is a typo (no server
# has that many connections).
MAX_BLOCKING_AT_LEAST = 1000000


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


def parse_globs(value, field, allow_empty):
    items = as_list(value, field, allow_empty)
    globs = []
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        globs.append(_check_glob(scalar_text(item, item_field), item_field))
    return tuple(globs)


def parse_addresses(value, field, allow_empty):
    items = as_list(value, field, allow_empty)
    entries = []
    for index, item in enumerate(items):
        item_field = f"{field}[{index}]"
        text = scalar_text(item, item_field).strip()
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
    items = as_list(value, field, allow_empty=False)
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


def _parse_blocking_at_least(value, field):
    return parse_count(value, field, 1, MAX_BLOCKING_AT_LEAST, "waiting sessions")


def _is_root_blocker(session):
    """Waits on nothing and has sessions waiting behind it (see _planner.annotate_locks)."""
    if session.get("blocked_by"):
        return False
    blocking = session.get("blocking")
    return is_int(blocking) and blocking > 0


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
        if present(raw, "states"):
            values["states"] = _parse_states(raw["states"], field + ".states")
        for key in GLOB_CONDITIONS:
            if present(raw, key):
                values[key] = parse_globs(raw[key], f"{field}.{key}", allow_empty=False)
        if present(raw, "client_addresses"):
            values["client_addresses"] = parse_addresses(
                raw["client_addresses"], field + ".client_addresses", allow_empty=False
            )
        for key in DURATION_CONDITIONS:
            if present(raw, key):
                values[key] = parse_duration(raw[key], f"{field}.{key}")
        if present(raw, "query_matches"):
            values["query_matches"] = _parse_regex(raw["query_matches"], field + ".query_matches")
        for key in LOCK_DURATION_CONDITIONS:
            if present(raw, key):
                values[key] = parse_duration(raw[key], f"{field}.{key}")
        if present(raw, "blocking_at_least"):
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
