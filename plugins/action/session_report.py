# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the fleet report (JSON + Markdown) from every host's registered result
and publish the totals with set_stats; for a run of a sliced sweep, the report of
the whole sweep (plugin_utils/_sweeps.py). Documentation: plugins/modules/session_report.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _change_window, _fleet, _sweeps

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


class ActionModule(_action.ActionMixin, ActionBase):
    FAILURE = AnsibleActionFail
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars, ARGUMENT_SPEC)
        del tmp
        if params["keep"] < 0:
            raise AnsibleActionFail(
                f"dbhygiene_report_keep: expected a whole number >= 0 (0 keeps every report), got {params['keep']!r}"
            )
        try:
            sweep, sweep_warnings = _sweeps.sweep_of(task_vars)
            slices = _sweeps.sweep_slices(task_vars)
        except _sweeps.SweepError as exc:
            raise AnsibleActionFail(str(exc))
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
        warnings = sweep_warnings + _fleet.awx_default_path_warnings(
            task_vars, report_dir=params["report_dir"], audit_log=params.get("audit_log")
        )
        check_mode = bool(self._task.check_mode)
        if params["kind"] == "drain":
            # A change window is one run over its hosts: its report is that run's.
            sweep = None
        build = _change_window.build_report if params["kind"] == "drain" else _fleet.build_report
        report_dir = _fleet.controller_path(params["report_dir"])
        try:
            if sweep is None:
                report = build(params["kind"], hosts_all, hosts_active, results, check_mode, context)
                paths, markdown = _fleet.write_report(report, report_dir, keep=params["keep"])
            else:
                # An AWX slice's inventory is its own slice: the other slices' hosts are not known.
                awx_slice = sweep["source"] in _sweeps.WORKFLOW_JOB_VARIABLES
                context["expected_hosts"] = None if awx_slice else self._inventory_hosts(task_vars)
                report, paths, markdown = _sweeps.write_sweep_report(
                    params["kind"],
                    report_dir,
                    sweep,
                    context["run"],
                    check_mode,
                    hosts_all,
                    hosts_active,
                    results,
                    context,
                    slices=slices,
                    keep=params["keep"],
                    now=_fleet.iso(_fleet.utc_now()),
                )
        except OSError as exc:
            raise AnsibleActionFail(
                f"cannot write the fleet report into {report_dir}: {exc}; "
                "set dbhygiene_report_dir to a writable directory on the control node"
            )
        totals = report["totals"]
        stats = {f"dbhygiene_{params['kind']}": totals}
        if sweep is not None:
            # This run's own figures for its job; the sweep's so far, apart.
            totals = build(params["kind"], hosts_all, hosts_active, results, check_mode, context)["totals"]
            stats = {
                f"dbhygiene_{params['kind']}": totals,
                f"dbhygiene_{params['kind']}_sweep": dict(report["totals"], id=sweep["id"]),
            }
        if warnings:
            result["warnings"] = warnings
        result["changed"] = False
        result["report"] = paths
        result["totals"] = totals
        result["failed_hosts"] = report["failed_hosts"]
        result["failed_host_reasons"] = report["failed_host_reasons"]
        result["msg"] = f"{params['kind']} report: {paths['markdown']} ({totals['ok']} ok, {totals['failed']} failed)"
        if sweep is not None:
            result["sweep"] = report["sweep"]
            result["sweep_totals"] = report["totals"]
            swept = report["totals"]
            result["msg"] += (
                f"; sweep {sweep['id']}: {len(report['sweep']['runs'])} run(s) so far, "
                f"{swept['ok']} ok, {swept['failed']} failed"
            )
        # What set_stats would do: AWX shows these as the job's artifacts.
        result["ansible_stats"] = {
            "data": stats,
            "per_host": False,
            "aggregate": False,
        }
        return result

    def _inventory_hosts(self, task_vars):
        """The hosts of the play's pattern in the whole inventory, --limit aside; None when not known.

        What the inventory_hostnames lookup does: `groups` holds every host of the
        inventory, whatever --limit says. Under --limit partitions of one inventory,
        every run of a sweep so knows the hosts of the others; an AWX slice's
        inventory holds its own slice only."""
        play = self._task
        while play is not None and getattr(play, "_play", None) is None:
            play = getattr(play, "_parent", None)
        pattern = getattr(getattr(play, "_play", None), "hosts", None)
        if not pattern or "{{" in str(pattern) or not isinstance(task_vars.get("groups"), dict):
            return None
        try:
            manager = InventoryManager(self._loader, parse=False)
            for group, hosts in task_vars["groups"].items():
                manager.add_group(group)
                for host in hosts:
                    manager.add_host(host, group=group)
            return sorted(host.name for host in manager.get_hosts(pattern=pattern))
        except (AnsibleError, AttributeError, TypeError, ValueError):
            return None
