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
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain import DEFAULT_GRACE
from ansible_collections.dbhygiene.sessions.plugins.module_utils._runner import JournalError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _action,
    _change_window,
    _connection,
    _files,
    _journal,
    _report_model,
    _trail,
)

KIND = "drain"


class ActionModule(_action.ActionMixin, ActionBase):
    ARGUMENT_SPEC = _action.host_argument_spec(
        databases={"type": "list", "elements": "str", "required": True},
        state={"type": "str", "default": "drained", "choices": list(_change_window.STATES)},
        allow_users={"type": "list", "elements": "str", "default": []},
        grace={"type": "raw", "default": DEFAULT_GRACE},
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
            "job_id": _trail.job_id(task_vars),
            "state": params["state"],
        }
        check_mode = bool(self._task.check_mode)
        journal = None
        if params.get("audit_log"):
            journal = self._journal(params["audit_log"], host, engine, context, module_args)
        module_result = self._run_module(engine, module_args, params["run_on"], task_vars, check_mode, journal)
        lines = []
        if journal is not None:
            lines = journal.settle_lines(module_result.get("record_before"), check_mode)
            lines += journal.outcome_lines(module_result, check_mode)
            lines += journal.sessions.settle_lines(module_result.get("settled"))
            journal.sessions.account(module_result, context["login_host"])
        result.update(module_result)
        # Ansible reserves `skipped` (a truthy one shows the task as skipped): never pass one on.
        result.pop("skipped", None)
        summary = {"engine": engine, "login_host": context["login_host"], "check_mode": check_mode}
        summary.update(_change_window.drain_summary(dict(module_result, state=params["state"])))
        summary["databases"] = summary.get("databases") or params["databases"]
        if module_result.get("failed"):
            summary["failure"] = _report_model.failure_reason(module_result)
        if journal is not None:
            lines += _change_window.trail_records(
                host, engine, dict(module_result, state=params["state"]), check_mode, context
            )
            self.write_trail(
                result, summary, params["audit_log"], lines, f"the change window's work was done on {host}"
            )
            self._finish_journal(journal, module_result, result, summary)
        result["dbhygiene"] = summary
        return result

    def _journal(self, audit_log, host, engine, context, module_args):
        """The write-ahead journal of this run (each change of rights and each session it ends in
        the trail before it is made / signalled); the changes earlier runs left without an
        outcome are settled from the server's record, the sessions (the sweep's pending file,
        a drain's or a sweep's) from this run's first listing (`settle_keys`). A pending file
        that cannot be read fails the host before any connection."""
        path = _files.controller_path(audit_log)
        context["run_id"] = _journal.new_run_id()
        pending = self._pending(path, host, engine, _journal.DRAIN, "changes of rights left without an outcome")
        sessions = self._pending(path, host, engine, None, "sessions an earlier run left unknown")
        if sessions:
            module_args["settle_keys"] = sorted(set(entry["key"] for entry in sessions))
        return _journal.DrainJournal(
            path, host, engine, context, pending, _journal.DrainSessions(path, host, engine, context, sessions)
        )

    def _pending(self, path, host, engine, kind, what):
        try:
            return _journal.load_pending(path, host, kind)
        except (OSError, ValueError) as exc:
            raise self.failure(
                f"the pending file {_journal.pending_path(path, host, kind)} of the audit trail cannot be "
                f"read: {exc}; nothing was done on this host (fix or move it: it lists {what})",
                dbhygiene={"engine": engine, "failure": "error"},
            )

    def _run_module(self, engine, module_args, run_on, task_vars, check_mode, journal):
        """The module's result. With a journal and a real run on the host: plan there first
        (check mode) and journal the plan's changes and sessions, then run it for real (a change
        or a session the real run ends beyond the plan, one that changed or logged in between,
        is in the trail after, with its outcome)."""
        if journal is None or check_mode or run_on == "controller":
            return self.run_engine_module(
                engine, KIND, module_args, run_on, task_vars, check_mode, self._task.diff, journal=journal
            )
        real = self._task.check_mode
        self._task.check_mode = True
        try:
            plan = self.run_engine_module(engine, KIND, module_args, run_on, task_vars, True)
        finally:
            self._task.check_mode = real
        if plan.get("failed"):  # nothing was changed: the plan's changes are what would have been
            return dict(plan, check_mode=False, changes=[], terminated=[], cancelled=[])
        settled = {"record_before": plan.get("record_before")}
        if plan.get("settled"):
            settled["settled"] = plan["settled"]
        try:
            if plan.get("changes"):
                journal.changing(plan["changes"])
            if plan.get("terminated"):  # check mode: every target (the running ones are in cancelled too)
                journal.ending(plan["terminated"])
        except JournalError as exc:
            # Nothing was sent: the changes journaled (if any) are not_changed.
            return dict({"failed": True, "msg": str(exc), "changes": []}, **settled)
        real_args = dict(module_args)
        real_args.pop("settle_keys", None)
        module_result = self.run_engine_module(engine, KIND, real_args, run_on, task_vars, False, self._task.diff)
        # The earlier runs' changes and sessions are settled as the plan saw them (before any change).
        module_result.update(settled)
        return module_result

    def _finish_journal(self, journal, module_result, result, summary):
        try:
            journal.finish(module_result)
            journal.sessions.finish(module_result, [])
        except OSError as exc:
            problem = f"the pending file of the audit trail could not be written: {exc}"
            result["failed"] = True
            summary.setdefault("failure", "error")
            result["msg"] = f"{result.get('msg')}; {problem}" if result.get("msg") else problem
