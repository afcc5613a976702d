# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors several layers share (module_utils/_errors.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import (
    DeadlineError,
    JournalError,
    PolicyError,
    SessionError,
    SweepBusyError,
)


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


def test_a_policy_error_says_the_field_and_keeps_the_value():
    error = PolicyError("policy.rules[0].grace", "5x", "invalid duration '5x'")
    assert str(error) == "policy.rules[0].grace: invalid duration '5x'"
    assert (error.field, error.value, error.problem) == ("policy.rules[0].grace", "5x", "invalid duration '5x'")


@pytest.mark.parametrize("error", [JournalError, DeadlineError, SweepBusyError])
def test_the_runs_errors_are_session_errors_a_module_fails_on(error):
    # run_sessions_module / run_drain_module catch SessionError: each of these fails the host.
    assert issubclass(error, SessionError)
    assert not issubclass(error, PolicyError)


def test_a_session_error_names_no_statement_unless_a_driver_sets_one():
    assert SessionError("x").statement is None
    error = SessionError("x")
    error.statement = "SELECT pg_terminate_backend(%s)"
    assert error.statement == "SELECT pg_terminate_backend(%s)"
