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
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _connection, _fleet, _inprocess

ARGUMENT_SPEC = dict(
    _connection.CONNECTION_OPTIONS,
    engine={"type": "str", "required": True, "choices": list(_fleet.ENGINES)},
    databases={"type": "list", "elements": "str", "required": True},
    state={"type": "str", "default": "drained", "choices": list(_change_window.STATES)},
    allow_users={"type": "list", "elements": "str", "default": []},
    grace={"type": "raw", "default": "30s"},
    wait_timeout={"type": "float"},
    host_timeout={"type": "raw"},
    audit_log={"type": "path"},
    run_on={"type": "str", "default": "controller", "choices": list(_connection.RUN_ON)},
)

KIND = "drain"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        engine = params["engine"]
        host = task_vars.get("inventory_hostname")
        error = _change_window.request_error(params)
        if error is not None:  # before any connection
            raise AnsibleActionFail(str(error), result={"dbhygiene": {"engine": engine, "failure": "error"}})
        module_args = _connection.module_args(engine, params)
        for name in ("databases", "state", "allow_users", "grace", "wait_timeout", "host_timeout"):
            if params.get(name) is not None:
                module_args[name] = params[name]
        context = {
            "login_host": module_args.get("login_host") or module_args.get("login_unix_socket"),
            "job_id": _fleet.job_id(task_vars),
            "state": params["state"],
        }
        check_mode = bool(self._task.check_mode)

        if params["run_on"] == "controller":
            module_result = _inprocess.run(engine, KIND, module_args, check_mode, self._task.diff)
        else:
            module_result = self._execute_module(
                module_name=_connection.module_name(engine, KIND),
                module_args=module_args,
                task_vars=task_vars,
            )
        module_result.pop("invocation", None)
        result.update(module_result)
        # Ansible reserves `skipped` (a truthy one shows the task as skipped): never pass one on.
        result.pop("skipped", None)
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        summary.update(_change_window.drain_summary(dict(module_result, state=params["state"])))
        summary["databases"] = summary.get("databases") or params["databases"]
        failed = bool(module_result.get("failed"))
        if failed:
            summary["failure"] = _fleet.failure_reason(module_result)
        if params.get("audit_log"):
            path = _fleet.controller_path(params["audit_log"])
            lines = _change_window.trail_records(
                host, engine, dict(module_result, state=params["state"]), check_mode, context
            )
            try:
                summary["audit_lines"] = _fleet.append_lines(path, lines)
            except OSError as exc:
                problem = (
                    f"the audit trail {path} could not be written: {exc}; "
                    "fix dbhygiene_audit_log (a writable path on the control node)"
                )
                if failed:
                    result["msg"] = f"{module_result.get('msg')}; {problem}"
                else:
                    result["failed"] = True
                    summary["failure"] = "error"
                    result["msg"] = f"the change window's work was done on {host} but {problem}"
        result["dbhygiene"] = summary
        return result
