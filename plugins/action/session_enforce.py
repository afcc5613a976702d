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
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection, _fleet, _inprocess

ARGUMENT_SPEC = dict(
    _connection.CONNECTION_OPTIONS,
    engine={"type": "str", "required": True, "choices": list(_fleet.ENGINES)},
    # A mapping, or a string holding its JSON or YAML (an AWX survey answer).
    policy={"type": "raw", "required": True},
    wait_timeout={"type": "float"},
    host_timeout={"type": "raw"},
    audit_log={"type": "path"},
    run_on={"type": "str", "default": "controller", "choices": list(_connection.RUN_ON)},
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
        module_args["policy"] = self._policy_argument(params["policy"], engine)
        for name in ("wait_timeout", "host_timeout"):
            if params.get(name) is not None:
                module_args[name] = params[name]
        context = {
            "login_host": module_args.get("login_host") or module_args.get("login_unix_socket"),
            "job_id": _fleet.job_id(task_vars),
        }
        check_mode = bool(self._task.check_mode)

        if params["run_on"] == "controller":
            module_result = _inprocess.run(engine, "sessions", module_args, check_mode, self._task.diff)
        else:
            module_result = self._execute_module(
                module_name=_connection.module_name(engine, "sessions"),
                module_args=module_args,
                task_vars=task_vars,
            )
        module_result.pop("invocation", None)
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
            path = _fleet.controller_path(params["audit_log"])
            lines = _fleet.trail_records(host, engine, module_result, check_mode, context)
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
                    result["msg"] = f"sessions were handled on {host} but {problem}"
        result["dbhygiene"] = summary
        return result

    def _policy_argument(self, raw, engine):
        """The policy as the module takes it; a bad one fails here, before any connection."""
        try:
            policy = _policy.parse_policy(raw)
        except _policy.PolicyError as exc:
            raise AnsibleActionFail(str(exc), result={"dbhygiene": {"engine": engine, "failure": "policy"}})
        problem = _connection.check_supported(policy, engine)
        if problem:
            raise AnsibleActionFail(problem, result={"dbhygiene": {"engine": engine, "failure": "policy"}})
        # A mapping goes on as given; a string (JSON or YAML) as the mapping it holds.
        return raw if isinstance(raw, dict) else policy.to_dict()


def _ended(module_result):
    return bool(module_result.get("terminated") or module_result.get("cancelled"))
