# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the drain role: drain (or open) the databases of a change window on
one host, in this worker (run_on controller, the default) or with the engine's *_drain
module on the host (run_on host), and write the audit trail on the control node.
Documentation: plugins/modules/session_drain.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _change_window, _connection, _fleet

KIND = "drain"


class ActionModule(_action.ActionMixin, ActionBase):
    ARGUMENT_SPEC = _action.host_argument_spec(
        databases={"type": "list", "elements": "str", "required": True},
        state={"type": "str", "default": "drained", "choices": list(_change_window.STATES)},
        allow_users={"type": "list", "elements": "str", "default": []},
        grace={"type": "raw", "default": "30s"},
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
        error = _change_window.request_error(params)
        if error is not None:  # before any connection
            raise self.failure(str(error), dbhygiene={"engine": engine, "failure": "error"})
        module_args = _connection.module_args(engine, params)
        for name in ("databases", "state", "allow_users", "grace", "wait_timeout", "host_timeout"):
            if params.get(name) is not None:
                module_args[name] = params[name]
        context = {
            "login_host": _action.target(module_args),
            "job_id": _fleet.job_id(task_vars),
            "state": params["state"],
        }
        check_mode = bool(self._task.check_mode)

        module_result = self.run_engine_module(
            engine, KIND, module_args, params["run_on"], task_vars, check_mode, self._task.diff
        )
        result.update(module_result)
        # Ansible reserves `skipped` (a truthy one shows the task as skipped): never pass one on.
        result.pop("skipped", None)
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        summary.update(_change_window.drain_summary(dict(module_result, state=params["state"])))
        summary["databases"] = summary.get("databases") or params["databases"]
        if module_result.get("failed"):
            summary["failure"] = _fleet.failure_reason(module_result)
        if params.get("audit_log"):
            lines = _change_window.trail_records(
                host, engine, dict(module_result, state=params["state"]), check_mode, context
            )
            self.write_trail(
                result, summary, params["audit_log"], lines, f"the change window's work was done on {host}"
            )
        result["dbhygiene"] = summary
        return result
