# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the timeouts role: reconcile the engine's own session timeouts on
one host, in this worker (run_on controller, the default) or with the engine's
*_timeouts module on the host (run_on host), and write the audit trail on the
control node. Documentation: plugins/modules/session_timeouts.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _time, _timeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _report_model, _trail

KIND = "timeouts"


class ActionModule(_action.ActionMixin, ActionBase):
    # Every engine's *_timeouts module's options, and the audit trail on the control node.
    ARGUMENT_SPEC = _action.host_argument_spec(KIND, audit_log={"type": "path"})
    FAILURE = AnsibleActionFail
    _requires_connection = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars)
        del tmp
        engine = params["engine"]
        host = task_vars.get("inventory_hostname")
        summary = {"engine": engine}
        try:
            _timeouts.checked_settings(params["timeouts"], engine)
        except PolicyError as exc:
            raise self.failure(str(exc), field=exc.field, dbhygiene=dict(summary, failure="policy"))
        module_args = _action.module_args(engine, KIND, params)
        # Only the engines whose module has it (MySQL / MariaDB); an empty one is unset.
        persist_file = module_args.pop("persist_file", None)
        if persist_file:
            if params["run_on"] == "controller":
                raise self.failure(
                    "persist_file is an option file on the database host, but dbhygiene_run_on is controller: set "
                    "dbhygiene_run_on: host to write it there, or leave dbhygiene_timeouts_persist_file unset",
                    dbhygiene=dict(summary, failure="policy"),
                )
            module_args["persist_file"] = persist_file
        check_mode = bool(self._task.check_mode)
        module_result = self.run_engine_module(
            engine, KIND, module_args, params["run_on"], task_vars, check_mode, self._task.diff
        )
        result.update(module_result)
        result.pop("skipped", None)  # reserved by Ansible (docs/architecture.md)
        context = {"login_host": _action.target(module_args), "job_id": _trail.job_id(task_vars)}
        changed_settings = [s for s in module_result.get("settings") or [] if s.get("changed")]
        summary.update(
            login_host=context["login_host"],
            check_mode=check_mode,
            settings=len(module_result.get("settings") or []),
            changed=len(changed_settings),
            persisted=module_result.get("persisted"),
        )
        if module_result.get("failed"):
            summary["failure"] = "policy" if module_result.get("field") else _report_model.failure_reason(module_result)
        if params.get("audit_log"):
            lines = _trail.timeouts_trail_records(
                host, engine, module_result, check_mode, context, _time.iso_utc_z(_time.utc_now())
            )
            self.write_trail(result, summary, params["audit_log"], lines, f"timeouts were reconciled on {host}")
        result["dbhygiene"] = summary
        return result
