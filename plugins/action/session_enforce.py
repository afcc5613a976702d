# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the enforce role: run the engine's *_sessions module for one
host and write the audit trail on the control node. Documentation:
plugins/modules/session_enforce.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection, _fleet

ARGUMENT_SPEC = dict(
    _connection.CONNECTION_OPTIONS,
    engine={"type": "str", "required": True, "choices": list(_fleet.ENGINES)},
    policy={"type": "dict", "required": True},
    wait_timeout={"type": "float"},
    audit_log={"type": "path"},
)


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
        module_args = _connection.module_args(engine, params)
        module_args["policy"] = params["policy"]
        if params.get("wait_timeout") is not None:
            module_args["wait_timeout"] = params["wait_timeout"]
        context = {
            "login_host": module_args.get("login_host") or module_args.get("login_unix_socket"),
            "job_id": _fleet.job_id(task_vars),
        }
        check_mode = bool(self._task.check_mode)

        module_result = self._execute_module(
            module_name=_connection.module_name(engine, "sessions"),
            module_args=module_args,
            task_vars=task_vars,
        )
        module_result.pop("invocation", None)
        result.update(module_result)
        # `skipped` is the module's list of sessions not ended, but a truthy `skipped`
        # makes Ansible show the whole task as skipped: pass it on under another name.
        result.pop("skipped", None)
        result["skipped_sessions"] = module_result.get("skipped") or []
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        if not module_result.get("failed"):
            summary.update(_fleet.enforce_summary(module_result))
            if params.get("audit_log"):
                path = _fleet.controller_path(params["audit_log"])
                lines = _fleet.trail_records(host, engine, module_result, check_mode, context)
                try:
                    summary["audit_lines"] = _fleet.append_lines(path, lines)
                except OSError as exc:
                    result["failed"] = True
                    result["msg"] = (
                        f"sessions were handled on {host} but the audit trail {path} could not be written: {exc}; "
                        "fix dbhygiene_audit_log (a writable path on the control node)"
                    )
        elif module_result.get("summary"):
            # A limit refused the plan: nothing was ended, the report still shows what was matched.
            summary.update(_fleet.enforce_summary(dict(module_result, terminated=[], cancelled=[], skipped=[])))
        result["dbhygiene"] = summary
        return result
