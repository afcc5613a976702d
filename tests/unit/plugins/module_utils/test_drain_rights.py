# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the drain and an engine's rights object share (module_utils/_drain_rights.py): a change's
key, the gate of a run on the host, a change beyond the plan stopped before it is sent."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _drain,
    _drain_request,
    _drain_rights,
)
from test_drain import options

# ---------------------------------------------------------------- a run on the host: only what the trail holds
LOCK_A = {"change": "locked", "account": "'a'@'%'", "right": "ACCOUNT LOCK", "grantor": None, "databases": ["billing"]}


LOCK_B = dict(LOCK_A, account="'b'@'%'")


def test_a_gated_change_beyond_the_plan_stops_the_rights_before_it_is_sent():
    gate = _drain_rights.plan_gate({"journaled_changes": [_drain_rights.change_key(LOCK_A)]}, check_mode=False)
    progress = _drain_rights.Progress("db-1", gate)
    progress.sending([LOCK_A])  # journaled: goes through
    progress.made([LOCK_A])
    with pytest.raises(_drain_rights.RightsError) as caught:
        progress.sending([LOCK_A, LOCK_B])
    error = caught.value
    assert error.beyond is not None and [c["account"] for c in error.beyond.changes] == ["'b'@'%'"]
    assert error.unknown is False and [c["status"] for c in error.changes] == ["done"]
    result = _drain._failed_rights(_drain_request.parse_request(options()), error)
    assert result["state_unknown"] is False


def test_no_gate_without_journaled_keys_or_in_check_mode():
    assert _drain_rights.plan_gate({}, check_mode=False) is None
    assert _drain_rights.plan_gate({"journaled_changes": []}, check_mode=True) is None
    assert (
        _drain_rights.plan_gate({"journaled_changes": []}, check_mode=False) is not None
    )  # nothing journaled: nothing goes


def test_a_change_key_names_change_account_right_grantor_and_databases():
    assert _drain_rights.change_key(LOCK_A) != _drain_rights.change_key(LOCK_B)
    assert _drain_rights.change_key(dict(LOCK_A, databases=None, database="billing")) == _drain_rights.change_key(
        LOCK_A
    )
