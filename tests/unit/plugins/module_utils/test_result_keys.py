# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a failed or verbose result carries: `queries` only at -vvv (_runner.for_verbosity), the
one failed statement (_driver.failed_statement). Real servers: tests/integration/test_result_noise.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _driver, _errors, _runner


class Module(object):
    def __init__(self, verbosity):
        self._verbosity = verbosity


@pytest.mark.parametrize("verbosity, kept", [(0, False), (2, False), (3, True), (4, True), (None, False)])
def test_queries_only_at_vvv(verbosity, kept):
    result = _runner.for_verbosity(Module(verbosity), {"queries": ["SELECT 1"], "changed": False})
    assert ("queries" in result) is kept and result["changed"] is False


class LibraryError(Exception):
    pass


def test_the_failed_statement_is_found_on_the_error_it_was_raised_from():
    try:
        try:
            error = LibraryError("denied")
            error.statement = "SELECT  a\n FROM t WHERE x = %s"
            raise error
        except LibraryError:
            raise _errors.SessionError("cannot read t")
    except _errors.SessionError as exc:
        assert _driver.failed_statement(exc) == {"failed_statement": "SELECT a FROM t WHERE x = %s"}


def test_a_long_statement_is_cut_and_no_statement_gives_nothing():
    error = _errors.SessionError("x")
    error.statement = "SELECT " + "a, " * 2000
    shown = _driver.failed_statement(error)["failed_statement"]
    assert len(shown) < _driver.STATEMENT_CHARS + 40 and shown.endswith("characters)")
    assert _driver.failed_statement(_errors.SessionError("login failed")) == {}
