# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the audit role: one *_session_info snapshot per host with the
policy's plan of that same snapshot (made by the info run, our own session left
out), thresholds. Read only. In this worker (run_on controller, the default) or
with the engine's *_session_info module on the host (run_on host).
Documentation: plugins/modules/session_audit.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _errors
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _report_model

KIND = "session_info"


class ActionModule(_action.ActionMixin, ActionBase):
    # The *_session_info modules' options (policy: a mapping, or a string holding its JSON or
    # YAML, an AWX survey answer), and the audit's thresholds.
    ARGUMENT_SPEC = _action.host_argument_spec(KIND, thresholds={"type": "dict"})
    FAILURE = AnsibleActionFail
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars)
        del tmp
        engine = params["engine"]
        # Everything that can be wrong with the input fails here, before connecting.
        policy = self.engine_policy(params["policy"], engine) if params.get("policy") else None
        try:
            thresholds = _report_model.parse_thresholds(params.get("thresholds"))
        except _errors.PolicyError as exc:
            raise self.failure(str(exc), dbhygiene={"engine": engine, "failure": "policy"})

        module_args = _action.module_args(engine, KIND, params)
        module_args.pop("policy", None)  # passed on parsed, or not at all
        if policy is not None:
            # The info run plans it on its own listing: one snapshot, one plan.
            module_args["policy"] = policy.to_dict()
        info = self.run_engine_module(engine, KIND, module_args, params["run_on"], task_vars)
        summary = {"engine": engine, "login_host": _action.target(module_args), "check_mode": self.check_mode}
        if info.get("failed"):
            result.update(info)
            summary["failure"] = _report_model.failure_reason(info)
            result["dbhygiene"] = summary
            return result

        sessions = info.get("sessions") or []
        server = info.get("server") or {}
        plan_dict = info.get("plan") if policy is not None else None
        # The info run's wait graph of that same snapshot (docs/architecture.md "Locks").
        figures, breaches = _report_model.audit_summary(sessions, server, plan_dict, thresholds, info.get("locks"))
        summary.update(figures)
        summary["breaches"] = breaches
        result["changed"] = False
        result["dbhygiene"] = summary
        if breaches:
            summary["failure"] = "threshold"
            result["failed"] = True
            result["msg"] = "{} is over its audit thresholds: {}".format(
                task_vars.get("inventory_hostname"), "; ".join(breaches)
            )
        return result
