# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instants as the collection writes and reads them: UTC, ISO 8601.

Private to the collection; pure (standard library only), so the drivers, the
runner and the controller-side plugin_utils share one way of doing it.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import datetime
from typing import Any

UTC = datetime.timezone.utc


def utc_now() -> datetime.datetime:
    """Now, as an aware datetime in UTC."""
    return datetime.datetime.now(UTC)


def iso_utc(moment: datetime.datetime | None) -> str | None:
    """A datetime as ISO 8601 in UTC (``+00:00``), microseconds kept when non-zero; None stays None.

    A naive datetime is taken as UTC (the drivers read the server's clock in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def iso_utc_z(moment: datetime.datetime) -> str:
    """An aware UTC datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the audit trail's and the reports' time)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: Any) -> datetime.datetime | None:
    """The datetime of an ISO 8601 text as iso_utc() writes it; None when it is not one."""
    try:
        return datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
