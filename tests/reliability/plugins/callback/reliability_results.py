# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reliability-suite-only notification callback: every task result as JSON, with its time.

Enabled by tests/reliability with ANSIBLE_CALLBACKS_ENABLED=reliability_results;
the file is named by DBHYGIENE_TEST_RESULTS. Each result carries `status`
(ok, failed, skipped, unreachable: a callback never sees a result's own
`failed`) and `time` (epoch seconds when the result arrived), so the suite can
say when each host finished.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: reliability_results
type: notification
short_description: write task results and their times to a JSON file (tests only)
description:
  - Writes one JSON document with every task result to the file named by C(DBHYGIENE_TEST_RESULTS).
requirements:
  - enable in configuration
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "reliability_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.results = []

    def _record(self, result, status):
        self.results.append(
            {
                "host": result._host.get_name(),
                "task": result._task.get_name(),
                "status": status,
                "time": time.time(),
                "result": result._result,
            }
        )

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        path = os.environ.get("DBHYGIENE_TEST_RESULTS")
        if path:
            with open(path, "w") as f:
                json.dump({"results": self.results, "stats": {h: stats.summarize(h) for h in hosts}}, f, default=str)
