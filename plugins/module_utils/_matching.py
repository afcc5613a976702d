# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which rules match each session, and whether protect keeps it: ``decide`` for the
planner (_planner.py), bounded when the policy needs it.

Private to the collection. Standard library only, no Ansible import.

Bounded matching
----------------
A regular expression search can take exponential time (``(a+)+$`` on
``'aaaa...!'``), and Python's ``re`` cannot be interrupted: a thread cannot be
stopped and a signal handler only runs after the search returns. So when the
policy ``needs_bounded_matching`` (it has a ``query_matches``, or, before
Python 3.9, a glob with several ``*``), the matching of the whole planning
pass runs in one forked child with a hard deadline (``MATCH_DEADLINE``): the
parent SIGKILLs it when the deadline passes and raises :class:`MatchTimeout`
naming the rule's field. The child also arms ``alarm()`` with the default
SIGALRM action, so it dies by itself even when its parent was killed first.
Everything else (a policy of states, durations, globs, CIDRs) is linear and
matched in-process. Standard library only; POSIX (Linux, macOS, the BSDs).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import json
import math
import mmap
import os
import selectors
import signal
import struct
import time
import warnings
from typing import Any, Callable, List, NoReturn, Optional, Tuple

from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError, SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import Policy

# Seconds the matching of one planning pass may take when it must be bounded. Normal
# patterns take milliseconds for 5,000 sessions; a pattern that needs more is refused.
MATCH_DEADLINE = 10.0
# Progress shared with the child: (session position, rule index; -1 = protect).
_PROGRESS = struct.Struct("<qq")
# Per session: (the indexes of the rules that match, protect's reason or None).
Decision = Tuple[List[int], Optional[str]]


class MatchTimeout(PolicyError, SessionError):
    """The policy could not be matched against this host's sessions within the deadline.

    A PolicyError (``field`` names the rule's ``query_matches``) and a SessionError
    (it is found on a host, after connecting: the host fails, nothing is ended)."""


def _decide(
    policy: Policy, sessions: list[dict[str, Any]], progress: Callable[[int, int], None] | None = None
) -> list[Decision]:
    """[(indexes of the rules that match, protect's reason or None)] per session.

    The indexes, in policy order, are every rule with a budget that matches (its groups
    count the session whatever the other rules decide: ``_apply_budgets``) and the first
    matching rule without one (a later one cannot decide anything). ``progress(position,
    rule_index)`` is told before each rule (-1: protect) is tried."""
    decisions = []
    for position, session in enumerate(sessions):
        found: list[int] = []
        decided = False
        for index, rule in enumerate(policy.rules):
            if decided and rule.budget is None:
                continue
            if progress is not None:
                progress(position, index)
            if rule.matches(session):
                found.append(index)
                decided = decided or rule.budget is None
        reason = None
        if found:
            if progress is not None:
                progress(position, -1)
            reason = policy.protect.protects(session)
        decisions.append((found, reason))
    return decisions


def _matcher_child(
    policy: Policy, sessions: list[dict[str, Any]], deadline: float, shared: mmap.mmap, read_end: int, write_end: int
) -> NoReturn:
    """The forked child: match, write the decisions as JSON, _exit. Never returns."""
    status = 70
    try:
        os.close(read_end)
        # Die at once on a signal (the C regex loop never runs a Python handler) and by
        # ourselves shortly after the deadline, even if the parent is gone by then.
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
            try:
                signal.signal(number, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.alarm(int(math.ceil(deadline)) + 1)

        def progress(position: int, index: int) -> None:
            _PROGRESS.pack_into(shared, 0, position, index)

        try:
            payload: dict[str, Any] = {"decisions": _decide(policy, sessions, progress)}
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported by the parent
            payload = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        data = memoryview(json.dumps(payload).encode("utf-8"))
        while data:
            data = data[os.write(write_end, data) :]
        status = 0
    finally:
        # No cleanup of the parent's objects (driver connections, buffered output) here.
        os._exit(status)  # pylint: disable=protected-access


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes, or None when the deadline passes first."""
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


_REGEX_ADVICE = (
    "the pattern backtracks catastrophically (nested quantifiers such as (a+)+, overlapping alternatives); "
    "make it more specific"
)
_GLOB_ADVICE = "globs with several * backtrack before Python 3.9; use fewer * or a newer Python"


def _slow_field(policy: Policy, rule_index: int) -> tuple[str, Any, str, str]:
    """(field, value, what was being matched, advice) for a matching that overran."""
    if rule_index < 0:
        return "policy.protect", None, "the protect globs", _GLOB_ADVICE
    field, value = policy.rules[rule_index].slow_field()
    if field.endswith(".query_matches"):
        return field, value, shown_value(value), _REGEX_ADVICE
    return field, value, f"the globs of rule {shown_value(value)}", _GLOB_ADVICE


def _decide_bounded(policy: Policy, sessions: list[dict[str, Any]], deadline: float) -> list[Decision]:
    """_decide in a forked child, killed when ``deadline`` seconds pass."""
    shared = mmap.mmap(-1, _PROGRESS.size)
    _PROGRESS.pack_into(shared, 0, -1, 0)
    read_end, write_end = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns about forking a threaded process: the child only matches
            # and writes to a pipe, it takes none of the locks other threads may hold.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        field, value = _slow_field(policy, 0)[:2]
        raise MatchTimeout(field, value, f"cannot start the bounded matcher for this policy ({exc})")
    if pid == 0:
        _matcher_child(policy, sessions, deadline, shared, read_end, write_end)
    os.close(write_end)
    try:
        data = _read_all(read_end, deadline)
    finally:
        os.close(read_end)
        try:
            os.kill(pid, signal.SIGKILL)  # not yet reaped: the pid is still our child's
            os.waitpid(pid, 0)
        except OSError:  # ChildProcessError where SIGCHLD is ignored (reaped already)
            pass
    position, rule_index = _PROGRESS.unpack_from(shared, 0)
    shared.close()
    if data is None:
        field, value, what, advice = _slow_field(policy, rule_index)
        where = ""
        if 0 <= position < len(sessions):
            stuck = shown_value(sessions[position].get("id"))
            where = f" (stuck on session {stuck}, {position + 1} of {len(sessions)})"
        raise MatchTimeout(
            field,
            value,
            f"matching {what} against this host's sessions did not finish within {deadline:g} seconds{where}: "
            f"{advice}. Nothing was ended",
        )
    try:
        payload = json.loads(data.decode("utf-8"))
        if "error" in payload:
            raise RuntimeError(f"matching the policy failed: {payload['error']}")
        return [(list(found), reason) for found, reason in payload["decisions"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"the bounded matcher died without an answer ({type(exc).__name__})")


def decide(policy: Policy, sessions: list[dict[str, Any]], deadline: float = MATCH_DEADLINE) -> list[Decision]:
    """[(indexes of the rules that match, protect's reason or None)] per session (see
    _decide): in a child bounded by `deadline` seconds when the policy needs it, else here."""
    if policy.needs_bounded_matching and sessions:
        return _decide_bounded(policy, sessions, deadline)
    return _decide(policy, sessions)
