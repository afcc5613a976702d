# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain statements of the postgresql engine (interface stub)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class PostgreSQLRights(object):
    """Reads, changes and records the connection rights of one server."""
