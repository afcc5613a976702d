# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors several layers raise and catch: one home, no import of the collection.

Private to the collection; pure, Python 3.8. The policy, the durations, the runner, the drain,
the drivers, the timeouts and the controller's plugins share them:

* ``PolicyError``: bad input (the policy, a module option, a role variable), found before any
  connection; ``field`` and ``value`` say where and what.
* ``SessionError``: a failure a user must act on once connected (connection, privilege,
  unsupported feature); its subclasses are the runner's and the drain's:
  ``JournalError`` (the audit trail could not take what a batch is about to do),
  ``DeadlineError`` (``host_timeout`` ran out), ``SweepBusyError`` (another sweep holds the
  server's sweep lock).
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type


class PolicyError(ValueError):
    """An invalid policy. ``field`` is where (``policy.rules[0].idle_longer_than``),
    ``value`` the offending value, str() says both and what is allowed."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class SessionError(Exception):
    """A failure a user must act on: connection, privilege, unsupported feature.

    The message says what failed and what to do; it never contains a secret. A driver
    sets `statement` (the template of the statement that failed: placeholders, no values)
    on the error, or on the library's error it is raised from (_driver.failed_statement).
    """

    statement: str | None = None


class JournalError(SessionError):
    """The audit trail could not take the `ending` lines of a batch: nothing of it was signalled."""


class DeadlineError(SessionError):
    """host_timeout ran out before (or during) a step of the host's sweep."""


class SweepBusyError(SessionError):
    """Another sweep holds the server's sweep lock: this host was left alone."""
