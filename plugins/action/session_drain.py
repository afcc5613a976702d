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
from ansible_collections.dbhygiene.sessions.plugins.module_utils._drain_rights import change_key
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import JournalError
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _action,
    _change_window,
    _files,
    _journal,
    _report_model,
    _trail,
)

KIND = "drain"
# How many times a drain on the host runs again after meeting changes or sessions beyond what
# the trail held (each time they are journaled first): rights that keep changing, or logins
# that keep getting in, stop it there.
BEYOND_PLAN_ROUNDS = 4


class ActionModule(_action.ActionMixin, ActionBase):
    # The *_drain modules' options, and the audit trail on the control node.
    ARGUMENT_SPEC = _action.host_argument_spec(KIND, audit_log={"type": "path"})
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
        module_args = _action.module_args(engine, KIND, params)
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
            return _journal.settleable(path, _journal.load_pending(path, host, kind))
        except (OSError, ValueError) as exc:
            raise self.failure(
                f"the pending file {_journal.pending_path(path, host, kind)} of the audit trail cannot be "
                f"read: {exc}; nothing was done on this host (fix or move it: it lists {what})",
                dbhygiene={"engine": engine, "failure": "error"},
            )

    def _run_module(self, engine, module_args, run_on, task_vars, check_mode, journal):
        """The module's result. With a journal and a real run on the host: plan there first
        (check mode) and journal the plan's changes and sessions, then run it for real, making
        and ending only what was journaled (`journaled_changes`, `journaled_sessions`). A change
        or a session beyond the plan (rights changed, or a login got in, between the two) stops
        that run before anything of it is sent (`beyond_plan`); it is journaled and the module
        runs again, at most BEYOND_PLAN_ROUNDS times: every change and every session is in the
        trail before it is made or signalled, on the host as on the controller."""
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
        changes, sessions = plan.get("changes") or [], plan.get("terminated") or []
        real_args = dict(module_args, journaled_changes=[], journaled_sessions=[])
        real_args.pop("settle_keys", None)
        rounds = []
        for _round in range(BEYOND_PLAN_ROUNDS):
            try:
                if changes:
                    journal.changing(changes)
                if sessions:  # check mode: every target (the running ones are in cancelled too)
                    journal.ending(sessions)
            except JournalError as exc:
                # Nothing of these was sent: the changes journaled (if any) are not_changed.
                failed = dict({"failed": True, "msg": str(exc), "changes": []}, **settled)
                return _merge_rounds(rounds, failed) if rounds else failed
            real_args = dict(
                real_args,
                journaled_changes=real_args["journaled_changes"] + [change_key(change) for change in changes],
                journaled_sessions=real_args["journaled_sessions"] + [entry.get("key") for entry in sessions],
            )
            module_result = self.run_engine_module(engine, KIND, real_args, run_on, task_vars, False, self._task.diff)
            beyond = module_result.pop("beyond_plan", None)
            if not beyond or not (beyond.get("changes") or beyond.get("sessions")):
                break
            rounds.append(module_result)
            changes, sessions = beyond.get("changes") or [], beyond.get("sessions") or []
        else:
            module_result = dict(
                rounds.pop(),
                failed=True,
                msg=(
                    f"{BEYOND_PLAN_ROUNDS} runs on the host each met changes or sessions beyond what the audit trail "
                    f"held (rights changing, or logins getting in, all along): the last {len(changes)} changes and "
                    f"{len(sessions)} sessions were not sent (nor written to the trail); run the drain again"
                ),
            )
        module_result = _merge_rounds(rounds, module_result)
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


def _merge_rounds(rounds, last):
    """One result of the runs on the host of one drain: what each earlier run (stopped at what
    was beyond the plan) changed and ended, and the last run's outcome (record, closed, failure)."""
    if not rounds:
        return last
    merged = dict(last)
    for name in ("changes", "restored", "terminated", "cancelled"):
        merged[name] = [entry for result in rounds for entry in result.get(name) or []] + list(last.get(name) or [])
    # Protected sessions each round lists again: once each; the last run's still_present stay.
    seen, not_ended = set(), []
    for entry in [e for result in rounds + [last] for e in result.get("not_ended") or []]:
        key = (entry.get("key"), entry.get("reason"))
        if key not in seen:
            seen.add(key)
            not_ended.append(entry)
    merged["not_ended"] = not_ended
    summary = dict(last.get("summary") or {})
    for name in ("terminated", "cancelled", "rounds"):
        total = sum((result.get("summary") or {}).get(name) or 0 for result in rounds + [last])
        if total or name in summary:
            summary[name] = total
    merged["summary"] = summary
    merged["changed"] = any(result.get("changed") for result in rounds + [last])
    diffs = [result["diff"] for result in rounds + [last] if isinstance(result.get("diff"), dict)]
    if len(diffs) > 1:
        merged["diff"] = {side: "".join(str(d.get(side) or "") for d in diffs) for side in ("before", "after")}
    return merged
