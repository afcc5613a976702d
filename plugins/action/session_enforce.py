# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of the enforce role: apply the policy on one host, in this
worker (run_on controller, the default) or with the engine's *_sessions module on
the host (run_on host), and write the audit trail on the control node.
With an audit trail the trail is written ahead (plugin_utils/_journal.py): no signal
goes out before its `ending` line is on disk. In this worker the runner calls the
journal before each batch; on the host, the module first plans (check mode), the
plan's victims are journaled, and the real run may end those alone (`end_only`).
Documentation: plugins/modules/session_enforce.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _action,
    _files,
    _journal,
    _report_model,
    _sweeps,
    _trail,
)

KIND = "sessions"


class ActionModule(_action.ActionMixin, ActionBase):
    # The *_sessions modules' options (policy: a mapping, or a string holding its JSON or YAML,
    # an AWX survey answer), and the audit trail on the control node.
    ARGUMENT_SPEC = _action.host_argument_spec(KIND, audit_log={"type": "path"})
    FAILURE = AnsibleActionFail
    _requires_connection = True
    _supports_diff = True

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars)
        del tmp
        engine = params["engine"]
        host = task_vars.get("inventory_hostname")
        module_args = _action.module_args(engine, KIND, params)
        module_args["policy"] = self._policy_argument(params["policy"], engine)
        context = {
            "login_host": _action.target(module_args),
            "job_id": _trail.job_id(task_vars),
            "sweep_id": _sweep_id(task_vars),
        }
        check_mode = bool(self._task.check_mode)
        journal = None
        if params.get("audit_log"):
            journal = self._journal(params["audit_log"], host, engine, context, module_args)
        module_result = self._run_module(engine, module_args, params["run_on"], task_vars, check_mode, journal)
        # Ansible reserves `skipped` (a truthy one shows the task as skipped): never pass one on.
        module_result.pop("skipped", None)
        lines = []
        if journal is not None:
            lines = journal.settle_lines(module_result.get("settled"))
            unaccounted = journal.unaccounted(module_result)
            if unaccounted:
                # The module never said what became of them: unknown, settled by the next run.
                module_result["unknown"] = (module_result.get("unknown") or []) + unaccounted
                module_result["failed"] = True
                module_result["msg"] = (
                    f"{len(unaccounted)} sessions whose fate is unknown on {context['login_host']} (journaled as "
                    f"ending, no outcome came back): {module_result.get('msg')}"
                )
        result.update(module_result)
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        failed = bool(module_result.get("failed"))
        if not failed or module_result.get("summary") or _ended(module_result):
            # Also when the host failed: a limit refused the plan (the report shows what was
            # matched), or a later step failed after sessions were ended (they are recorded).
            summary.update(_report_model.enforce_summary(module_result))
        if failed:
            summary["failure"] = _failure(module_result)
        if journal is not None:
            lines += _trail.trail_records(host, engine, module_result, check_mode, context)
            self.write_trail(result, summary, params["audit_log"], lines, f"sessions were handled on {host}")
            self._finish_journal(journal, module_result, result, summary)
        result["dbhygiene"] = summary
        return result

    def _journal(self, audit_log, host, engine, context, module_args):
        """The write-ahead journal of this run; the victims earlier runs left unknown go to the
        module to be settled (`settle_keys`). A pending file that cannot be read fails the host
        before any connection."""
        path = _files.controller_path(audit_log)
        context["run_id"] = _journal.new_run_id()
        try:
            pending = _journal.settleable(path, _journal.load_pending(path, host))
        except (OSError, ValueError) as exc:
            raise self.failure(
                f"the pending file {_journal.pending_path(path, host)} of the audit trail cannot be read: {exc}; "
                "nothing was done on this host (fix or move it: it lists sessions an earlier run left unknown)",
                dbhygiene={"engine": context.get("engine"), "failure": "error"},
            )
        if pending:
            module_args["settle_keys"] = sorted(set(entry["key"] for entry in pending))
        return _journal.TrailJournal(
            path, host, engine, context, self._policy_argument_name(module_args["policy"]), pending
        )

    def _run_module(self, engine, module_args, run_on, task_vars, check_mode, journal):
        """The module's result. With a journal and a real run on the host: plan there first,
        journal the plan's victims, then end those alone."""
        if journal is None or check_mode or run_on == "controller":
            return self.run_engine_module(
                engine, KIND, module_args, run_on, task_vars, check_mode, self._task.diff, journal=journal
            )
        real = self._task.check_mode
        self._task.check_mode = True  # the plan: the module in check mode on the host
        try:
            plan = self.run_engine_module(engine, KIND, module_args, run_on, task_vars, True)
        finally:
            self._task.check_mode = real
        if plan.get("failed"):
            return dict(plan, check_mode=False, terminated=[], cancelled=[])
        victims = (plan.get("terminated") or []) + (plan.get("cancelled") or [])
        try:
            if victims:
                journal.ending(victims)
        except JournalError as exc:
            return dict({"failed": True, "msg": str(exc)}, **_settled(plan))
        real_args = dict(module_args, end_only=[entry.get("key") for entry in victims])
        real_args.pop("settle_keys", None)
        module_result = self.run_engine_module(engine, KIND, real_args, run_on, task_vars, False, self._task.diff)
        module_result.update(_settled(plan))
        return module_result

    def _finish_journal(self, journal, module_result, result, summary):
        try:
            journal.finish(module_result, [])
        except OSError as exc:
            problem = f"the pending file of the audit trail could not be written: {exc}"
            result["failed"] = True
            summary.setdefault("failure", "error")
            result["msg"] = f"{result.get('msg')}; {problem}" if result.get("msg") else problem

    def _policy_argument_name(self, policy):
        return policy.get("name") if isinstance(policy, dict) else None

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


def _settled(plan):
    return {"settled": plan["settled"]} if plan.get("settled") else {}


def _failure(module_result):
    """The host's failure code for the report."""
    if "would_end" in module_result:
        return "limit"
    if module_result.get("unknown"):
        return "unknown_outcome"
    return _report_model.failure_reason(module_result)


def _ended(module_result):
    return bool(module_result.get("terminated") or module_result.get("cancelled"))
