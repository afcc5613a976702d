# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the fleet report (JSON + Markdown) from every host's registered result
and publish the totals with set_stats. Documentation: plugins/modules/session_report.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _fleet

ARGUMENT_SPEC = {
    "kind": {"type": "str", "required": True, "choices": ["audit", "enforce", "drain"]},
    "result_var": {"type": "str", "required": True},
    "report_dir": {"type": "path", "required": True},
    "audit_log": {"type": "path"},
    "hosts": {"type": "list", "elements": "str"},
    "keep": {"type": "int", "default": _fleet.DEFAULT_REPORT_KEEP},
}


def _plain_result(value):
    if value is None or not hasattr(value, "get"):
        return None
    return dict(value)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if params["keep"] < 0:
            raise AnsibleActionFail(
                f"dbhygiene_report_keep: expected a whole number >= 0 (0 keeps every report), got {params['keep']!r}"
            )
        hostvars = task_vars["hostvars"]
        hosts_all = params.get("hosts") or list(task_vars.get("ansible_play_hosts_all") or [])
        hosts_active = list(task_vars.get("ansible_play_hosts") or [])
        results = {}
        policies = set()
        for host in hosts_all:
            host_vars = hostvars[host]
            registered = host_vars[params["result_var"]] if params["result_var"] in host_vars else None
            results[host] = _plain_result(registered)
            data = (results[host] or {}).get("dbhygiene") or {}
            if data.get("policy"):
                policies.add(str(data["policy"]))
        context = {
            "policy": ", ".join(sorted(policies)) or None,
            "job_id": _fleet.job_id(task_vars),
            "audit_log": _fleet.controller_path(params["audit_log"]) if params.get("audit_log") else None,
            "run": _fleet.run_tag(),
        }
        warnings = _fleet.awx_default_path_warnings(
            task_vars, report_dir=params["report_dir"], audit_log=params.get("audit_log")
        )
        build = _change_window.build_report if params["kind"] == "drain" else _fleet.build_report
        report = build(params["kind"], hosts_all, hosts_active, results, self._task.check_mode, context)
        report_dir = _fleet.controller_path(params["report_dir"])
        try:
            paths, markdown = _fleet.write_report(report, report_dir, keep=params["keep"])
        except OSError as exc:
            raise AnsibleActionFail(
                f"cannot write the fleet report into {report_dir}: {exc}; "
                "set dbhygiene_report_dir to a writable directory on the control node"
            )
        totals = report["totals"]
        if warnings:
            result["warnings"] = warnings
        result["changed"] = False
        result["report"] = paths
        result["totals"] = totals
        result["failed_hosts"] = report["failed_hosts"]
        result["failed_host_reasons"] = report["failed_host_reasons"]
        result["msg"] = f"{params['kind']} report: {paths['markdown']} ({totals['ok']} ok, {totals['failed']} failed)"
        # What set_stats would do: AWX shows these as the job's artifacts.
        result["ansible_stats"] = {
            "data": {f"dbhygiene_{params['kind']}": totals},
            "per_host": False,
            "aggregate": False,
        }
        return result
