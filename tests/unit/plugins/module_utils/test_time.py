# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one time helper: instants written and read as UTC ISO 8601."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _time

UTC = datetime.timezone.utc


def test_utc_now_is_aware_and_in_utc():
    now = _time.utc_now()
    assert now.tzinfo is not None and now.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (None, None),
        (datetime.datetime(2026, 12, 1, 16, 13, 0, 123456, tzinfo=UTC), "2026-12-01T16:13:00.123456+00:00"),
        # microseconds only when non-zero
        (datetime.datetime(2026, 12, 1, 16, 13, 0, tzinfo=UTC), "2026-12-01T16:13:00+00:00"),
        # naive: the drivers' server clock in UTC
        (datetime.datetime(2026, 12, 1, 16, 13, 0, 5), "2026-12-01T16:13:00.000005+00:00"),
        # another offset: converted to UTC
        (
            datetime.datetime(2026, 12, 1, 18, 13, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2026-12-01T16:13:00+00:00",
        ),
    ],
)
def test_iso_utc(moment, text):
    assert _time.iso_utc(moment) == text


def test_iso_utc_z_is_the_trail_and_report_format():
    moment = datetime.datetime(2026, 12, 1, 16, 13, 0, tzinfo=UTC)
    assert _time.iso_utc_z(moment) == "2026-12-01T16:13:00.000000Z"


@pytest.mark.parametrize("text", ["2026-12-01T16:13:00.123456+00:00", "2026-12-01T16:13:00+00:00"])
def test_parse_instant_reads_what_iso_utc_writes(text):
    moment = _time.parse_instant(text)
    assert _time.iso_utc(moment) == text


@pytest.mark.parametrize("text", [None, "", "yesterday", 42])
def test_parse_instant_of_anything_else_is_none(text):
    assert _time.parse_instant(text) is None
