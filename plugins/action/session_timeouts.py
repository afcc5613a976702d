# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the timeouts role: reconcile the engine's own session timeouts on
one host, in this worker (run_on controller, the default) or with the engine's
*_timeouts module on the host (run_on host), and write the audit trail on the
control node. Documentation: plugins/modules/session_timeouts.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _timeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection, _fleet, _inprocess

ARGUMENT_SPEC = dict(
    _connection.CONNECTION_OPTIONS,
    engine={"type": "str", "required": True, "choices": list(_fleet.ENGINES)},
    timeouts={"type": "dict", "required": True},
    persist_file={"type": "str"},
    audit_log={"type": "path"},
    run_on={"type": "str", "default": "controller", "choices": list(_connection.RUN_ON)},
)


class _Done(Exception):
    def __init__(self, result):
        Exception.__init__(self, "module exit")
        self.result = result


class _Module(object):
    """What run_timeouts_module uses of AnsibleModule, in this process."""

    def __init__(self, params, check_mode, diff):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff

    def exit_json(self, **result):
        raise _Done(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg)
        raise _Done(result)


def run_in_process(engine, module_args, check_mode, diff):
    """The result the <engine>_timeouts module would return, computed in this worker
    (same argument spec, defaults and environment fallbacks, no_log values masked)."""
    missing = _inprocess.missing_driver(engine)
    if missing:
        return missing
    driver_module = _inprocess.ENGINES[engine].driver_module
    spec = driver_module.connection_argument_spec()
    spec.update(_timeouts.mysql_argument_spec() if engine == "mysql" else _timeouts.argument_spec())
    validated = ArgumentSpecValidator(spec).validate(json.loads(json.dumps(module_args, default=str)))
    params = validated.validated_parameters
    if validated.error_messages:
        result = {"failed": True, "msg": "; ".join(validated.error_messages)}
    else:
        try:
            _timeouts.run_timeouts_module(_Module(params, check_mode, diff), engine, driver_module.open_driver)
            result = {"failed": True, "msg": f"the {engine} timeouts run ended without a result"}
        except _Done as done:
            result = done.result
        except Exception as exc:  # a bug: fail this host alone, as a crashed module would
            result = {"failed": True, "msg": f"the {engine} timeouts run failed: {type(exc).__name__}: {exc}"}
    secrets = set(
        str(params.get(name))
        for name, option in spec.items()
        if option.get("no_log") and params.get(name) not in (None, "")
    )
    return json.loads(json.dumps(remove_values(result, secrets), default=str))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        engine = params["engine"]
        host = task_vars.get("inventory_hostname")
        summary = {"engine": engine}
        try:
            settings = _timeouts.parse_timeouts(params["timeouts"])
            (_timeouts.check_postgresql if engine == "postgresql" else _timeouts.check_mysql)(settings)
        except PolicyError as exc:
            raise AnsibleActionFail(str(exc), result={"field": exc.field, "dbhygiene": dict(summary, failure="policy")})
        module_args = _connection.module_args(engine, params)
        module_args["timeouts"] = params["timeouts"]
        if engine == "mysql" and params.get("persist_file"):
            if params["run_on"] == "controller":
                raise AnsibleActionFail(
                    "persist_file is an option file on the database host, but dbhygiene_run_on is controller: set "
                    "dbhygiene_run_on: host to write it there, or leave dbhygiene_timeouts_persist_file unset",
                    result={"dbhygiene": dict(summary, failure="policy")},
                )
            module_args["persist_file"] = params["persist_file"]
        check_mode = bool(self._task.check_mode)
        if params["run_on"] == "controller":
            module_result = run_in_process(engine, module_args, check_mode, bool(self._task.diff))
        else:
            module_result = self._execute_module(
                module_name=f"{_connection.COLLECTION}.{engine}_timeouts", module_args=module_args, task_vars=task_vars
            )
        module_result.pop("invocation", None)
        result.update(module_result)
        result.pop("skipped", None)  # reserved by Ansible (DESIGN.md)
        context = {
            "login_host": module_args.get("login_host") or module_args.get("login_unix_socket"),
            "job_id": _fleet.job_id(task_vars),
        }
        changed_settings = [s for s in module_result.get("settings") or [] if s.get("changed")]
        summary.update(
            login_host=context["login_host"],
            check_mode=check_mode,
            settings=len(module_result.get("settings") or []),
            changed=len(changed_settings),
            persisted=module_result.get("persisted"),
        )
        if module_result.get("failed"):
            summary["failure"] = "policy" if module_result.get("field") else _fleet.failure_reason(module_result)
        if params.get("audit_log"):
            path = _fleet.controller_path(params["audit_log"])
            lines = _timeouts.trail_records(
                host, engine, module_result, check_mode, context, _fleet.iso(_fleet.utc_now())
            )
            try:
                summary["audit_lines"] = _fleet.append_lines(path, lines)
            except OSError as exc:
                problem = (
                    f"the audit trail {path} could not be written: {exc}; "
                    "fix dbhygiene_audit_log (a writable path on the control node)"
                )
                if module_result.get("failed"):
                    result["msg"] = f"{module_result.get('msg')}; {problem}"
                else:
                    result["failed"] = True
                    summary["failure"] = "error"
                    result["msg"] = f"timeouts were reconciled on {host} but {problem}"
        result["dbhygiene"] = summary
        return result
