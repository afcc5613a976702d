# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the enforce role: apply the policy on one host, in this
worker (run_on controller, the default) or with the engine's *_sessions module on
the host (run_on host), and write the audit trail on the control node.
Documentation: plugins/modules/session_enforce.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _connection, _fleet, _sweeps


class ActionModule(_action.ActionMixin, ActionBase):
    ARGUMENT_SPEC = _action.host_argument_spec(
        # A mapping, or a string holding its JSON or YAML (an AWX survey answer).
        policy={"type": "raw", "required": True},
        wait_timeout={"type": "float"},
        host_timeout={"type": "raw"},
        audit_log={"type": "path"},
    )
    FAILURE = AnsibleActionFail
    _requires_connection = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars)
        del tmp
        engine = params["engine"]
        host = task_vars.get("inventory_hostname")
        module_args = _connection.module_args(engine, params)
        module_args["policy"] = self._policy_argument(params["policy"], engine)
        for name in ("wait_timeout", "host_timeout"):
            if params.get(name) is not None:
                module_args[name] = params[name]
        context = {
            "login_host": _action.target(module_args),
            "job_id": _fleet.job_id(task_vars),
            "sweep_id": _sweep_id(task_vars),
        }
        check_mode = bool(self._task.check_mode)

        module_result = self.run_engine_module(
            engine, "sessions", module_args, params["run_on"], task_vars, check_mode, self._task.diff
        )
        result.update(module_result)
        # Ansible reserves `skipped` (a truthy one shows the task as skipped): never pass one on.
        result.pop("skipped", None)
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        failed = bool(module_result.get("failed"))
        if not failed or module_result.get("summary") or _ended(module_result):
            # Also when the host failed: a limit refused the plan (the report shows what was
            # matched), or a later step failed after sessions were ended (they are recorded).
            summary.update(_fleet.enforce_summary(module_result))
        if failed:
            summary["failure"] = "limit" if "would_end" in module_result else _fleet.failure_reason(module_result)
        if params.get("audit_log"):
            lines = _fleet.trail_records(host, engine, module_result, check_mode, context)
            self.write_trail(result, summary, params["audit_log"], lines, f"sessions were handled on {host}")
        result["dbhygiene"] = summary
        return result

    def _policy_argument(self, raw, engine):
        """The policy as the module takes it; a bad one fails here, before any connection."""
        policy = self.engine_policy(raw, engine)
        # A mapping goes on as given; a string (JSON or YAML) as the mapping it holds.
        return raw if isinstance(raw, dict) else policy.to_dict()


def _sweep_id(task_vars):
    """The id of the sliced sweep this run is part of, for the trail (None when none; a bad
    sweep variable fails the report step, which says why)."""
    try:
        sweep = _sweeps.sweep_of(task_vars)[0]
    except _sweeps.SweepError:
        return None
    return sweep and sweep["id"]


def _ended(module_result):
    return bool(module_result.get("terminated") or module_result.get("cancelled"))
