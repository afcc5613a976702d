# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the fleet report (JSON, Markdown, an HTML page) from every host's registered result,
merge its figures into the metrics file, and publish the totals with set_stats; for a run of a
sliced sweep, the report of the whole sweep (plugin_utils/_sweeps.py); for a run stopped by its variables'
check, or a play with no host to work on, the report saying why.
Documentation: plugins/modules/session_report.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _time
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _action,
    _files,
    _metrics,
    _outputs,
    _report_html,
    _report_kinds,
    _sweeps,
    _trail,
)

ARGUMENT_SPEC = {
    "kind": {"type": "str", "required": True, "choices": list(_report_kinds.KINDS)},
    "result_var": {"type": "str", "required": True},
    "report_dir": {"type": "path", "required": True},
    "audit_log": {"type": "path"},
    "hosts": {"type": "list", "elements": "str"},
    "keep": {"type": "int", "default": _outputs.DEFAULT_REPORT_KEEP},
    # The HTML page's Jinja2 template (None: the collection's) and the metrics file (None: in report_dir).
    "html_template": {"type": "path"},
    "metrics_file": {"type": "path"},
    # The variable the role's policy_check task registered: when it failed, the run stopped there.
    "check_var": {"type": "str"},
    # The pattern of the play to come and its hosts in the whole inventory: with no host left to
    # work on, the report says why and the task fails.
    "pattern": {"type": "str"},
    "pattern_hosts": {"type": "list", "elements": "str", "default": []},
}


def _plain_result(value):
    if value is None or not hasattr(value, "get"):
        return None
    return dict(value)


def _stopped_by_check(hostvars, hosts, check_var):
    """The message of the role's variables check (registered as `check_var`, the same on every
    host: it runs once) when it failed and so stopped the run; else None."""
    for host in hosts:
        checked = _plain_result(hostvars[host][check_var]) if check_var in hostvars[host] else None
        if checked is not None:
            return str(checked.get("msg") or "the variables' check failed") if checked.get("failed") else None
    return None


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
        check_mode = self.check_mode
        hostvars = task_vars["hostvars"]
        hosts_all = params.get("hosts") or list(task_vars.get("ansible_play_hosts_all") or [])
        hosts_active = list(task_vars.get("ansible_play_hosts") or [])
        stopped = None
        if params.get("pattern") is not None:
            targets = _outputs.play_targets(params["pattern_hosts"], task_vars.get("ansible_play_hosts_all"))
            if targets:
                result.update(changed=False, check_mode=check_mode, hosts=targets, stopped=None)
                result["msg"] = f"{len(targets)} host(s) to work on in {params['pattern']!r}"
                return result
            stopped = _outputs.no_hosts_message(params["pattern"], params["pattern_hosts"], task_vars)
            hosts_all = hosts_active = []
        elif params.get("check_var"):
            stopped = _stopped_by_check(hostvars, hosts_all, params["check_var"])
        try:
            sweep, sweep_warnings = _sweeps.sweep_of(task_vars)
            slices = _sweeps.sweep_slices(task_vars)
        except _sweeps.SweepError as exc:
            raise AnsibleActionFail(str(exc))
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
            "job_id": _trail.job_id(task_vars),
            "audit_log": _files.controller_path(params["audit_log"]) if params.get("audit_log") else None,
            "run": _outputs.run_tag(),
            "stopped": stopped,
        }
        warnings = sweep_warnings + _outputs.awx_default_path_warnings(
            task_vars, report_dir=params["report_dir"], audit_log=params.get("audit_log")
        )
        if _report_kinds.KINDS[params["kind"]].one_run or stopped:
            # A change window is one run over its hosts: its report is that run's. So is a run that stopped.
            sweep = None
        report_dir = _files.controller_path(params["report_dir"])
        template = _files.controller_path(params["html_template"]) if params.get("html_template") else None
        metrics_file = _files.controller_path(params.get("metrics_file") or _metrics.default_path(report_dir))
        try:
            if sweep is None:
                report = _report_kinds.build_report(
                    params["kind"], hosts_all, hosts_active, results, check_mode, context
                )
                paths, markdown = _outputs.write_report(report, report_dir, keep=params["keep"], html_template=template)
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
                    now=_time.iso_utc_z(_time.utc_now()),
                    html_template=template,
                )
        except _report_html.TemplateError as exc:
            raise AnsibleActionFail(f"{exc} (the JSON and Markdown reports are written in {report_dir})")
        except OSError as exc:
            raise AnsibleActionFail(
                f"cannot write the fleet report into {report_dir}: {exc}; "
                "set dbhygiene_report_dir to a writable directory on the control node"
            )
        try:
            _metrics.write_metrics(report, metrics_file)
        except OSError as exc:
            raise AnsibleActionFail(
                f"dbhygiene_metrics_file: cannot write {metrics_file}: {exc}; "
                "set it to a writable path on the control node (the reports are written)"
            )
        totals = report["totals"]
        stats = {f"dbhygiene_{params['kind']}": totals}
        if sweep is not None:
            # This run's own figures for its job; the sweep's so far, apart.
            totals = _report_kinds.build_report(params["kind"], hosts_all, hosts_active, results, check_mode, context)[
                "totals"
            ]
            stats = {
                f"dbhygiene_{params['kind']}": totals,
                f"dbhygiene_{params['kind']}_sweep": dict(report["totals"], id=sweep["id"]),
            }
        if warnings:
            result["warnings"] = warnings
        result["changed"] = False
        result["check_mode"] = check_mode
        result["stopped"] = stopped
        result["report"] = paths
        result["metrics_file"] = metrics_file
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
        # What set_stats would do: AWX shows these as the job's artifacts (a dry run's say so).
        result["ansible_stats"] = {
            "data": {name: dict(figures, check_mode=check_mode, stopped=stopped) for name, figures in stats.items()},
            "per_host": False,
            "aggregate": False,
        }
        if stopped:
            # The role's next task fails the run with this message (this one publishes the artifact).
            result["msg"] = f"{stopped}; report: {paths['markdown']}"
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
