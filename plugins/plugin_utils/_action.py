# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base of the collection's action plugins: their opening (task variables,
ActionBase's own run, the argument spec), and for the per-host plugins of the roles
their argument spec (the engine modules', extended), the policy check before any
connection and the run of the engine module (in this worker or on the host).

A mixin, put before ``ActionBase``::

    KIND = "session_info"  # the engine modules it runs (a registry purpose)

    class ActionModule(_action.ActionMixin, ActionBase):
        ARGUMENT_SPEC = _action.host_argument_spec(KIND, thresholds={"type": "dict"})
        FAILURE = AnsibleActionFail

        def run(self, tmp=None, task_vars=None):
            result, params, task_vars = self.begin(tmp, task_vars)

No Ansible import (the plugin_utils rule): the plugin passes its exception class
(``FAILURE``) and its ActionBase supplies the rest. Private to the collection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _argspec, _engines, _errors, _policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection, _files, _inprocess, _trail


def module_options(engine, kind):
    """The options of the engine's module for `kind` (a registry purpose) besides the
    connection, as the roles' action plugins take them (``_argspec.role_spec``)."""
    return _argspec.role_spec(_inprocess.KINDS[kind][0](engine))


def host_argument_spec(kind, **options):
    """The spec of a per-host action plugin of a role that runs the engines' modules for `kind`
    (community.crypto's pattern: the module's spec, extended): every engine's connection
    options, `engine`, `run_on`, the options of every engine's `kind` module (module_options:
    an option added to a module is the plugin's too, with no edit here), and the plugin's own
    `options`, controller-side ones. One of those redeclaring an option of the others is a
    ValueError (the module's spec is the one source of its options)."""
    spec = dict(_connection.CONNECTION_OPTIONS)
    spec["engine"] = {"type": "str", "required": True, "choices": list(_connection.ENGINES)}
    spec["run_on"] = {"type": "str", "default": "controller", "choices": list(_connection.RUN_ON)}
    for engine in _connection.ENGINES:
        for name, option in module_options(engine, kind).items():
            spec.setdefault(name, option)
    again = sorted(set(options) & set(spec))
    if again:
        raise ValueError(
            f"{', '.join(again)}: already an option of the {kind} modules or of every per-host plugin; "
            "extend their spec, never declare an option again"
        )
    spec.update(options)
    return spec


def module_args(engine, kind, params):
    """The arguments of the engine's module for `kind` from the plugin params: the connection's
    (``_connection.module_args``) and each option of that module (module_options) that is set."""
    args = _connection.module_args(engine, params)
    for name in module_options(engine, kind):
        if params.get(name) is not None:
            args[name] = params[name]
    return args


def target(module_args):
    """Where the module connects, as the fleet report shows it."""
    return module_args.get("login_host") or module_args.get("login_unix_socket")


class ActionMixin(object):
    """What every action plugin of the collection does the same way (see the module doc)."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    # The plugin's argument spec and the exception that fails its task (AnsibleActionFail).
    ARGUMENT_SPEC = {}
    FAILURE = None

    def begin(self, tmp, task_vars, argument_spec=None):
        """ActionBase's run, then the arguments validated against `argument_spec` (default,
        the class's ARGUMENT_SPEC): (result, params, task_vars)."""
        task_vars = task_vars or {}
        result = super(ActionMixin, self).run(tmp, task_vars)  # pylint: disable=no-member
        argument_spec = self.ARGUMENT_SPEC if argument_spec is None else argument_spec
        # inf / nan in a number option: named here (ansible-core's int conversion raises OverflowError)
        numbers = _argspec.number_problems(argument_spec, self._task.args)  # pylint: disable=no-member
        if numbers:
            raise self.failure("; ".join(numbers))
        _validation, params = self.validate_argument_spec(argument_spec=argument_spec)  # pylint: disable=no-member
        # Every result says whether it is a dry run (docs/architecture.md, "Dry runs in the open").
        result["check_mode"] = self.check_mode
        return result, params, task_vars

    @property
    def check_mode(self):
        """Whether this task runs in check mode (a dry run)."""
        return bool(self._task.check_mode)  # pylint: disable=no-member

    def failure(self, msg, **result):
        """The exception that fails the task with `msg` (and `result`'s keys in its result, with
        `check_mode`, also in its `dbhygiene` summary): ``raise self.failure(...)``."""
        result["check_mode"] = self.check_mode
        if isinstance(result.get("dbhygiene"), dict):
            result["dbhygiene"] = dict(result["dbhygiene"], check_mode=self.check_mode)
        return self.FAILURE(msg, result=result)  # pylint: disable=not-callable

    def engine_policy(self, raw, engine):
        """The parsed policy; a bad one, or one the engine cannot evaluate, fails the task here,
        before any connection (result ``dbhygiene.failure: policy``)."""
        refused = {"dbhygiene": {"engine": engine, "failure": "policy"}}
        try:
            policy = _policy.parse_policy(raw)
        except _errors.PolicyError as exc:
            raise self.failure(str(exc), **refused)
        problem = _engines.check_supported(policy, engine)
        if problem:
            raise self.failure(problem, **refused)
        return policy

    def run_engine_module(
        self, engine, kind, module_args, run_on, task_vars, check_mode=False, diff=False, journal=None
    ):
        """The result of the engine's module for `kind` (a registry purpose): in this worker
        (run_on controller, where `journal`, the runner's write-ahead hook, is used) or on the
        host; without the `invocation` key. A number option the module would refuse as inf,
        -inf, nan or too large fails the task here, either way."""
        numbers = _inprocess.number_problems(engine, kind, module_args)
        if numbers:
            raise self.failure("; ".join(numbers))
        if run_on == "controller":
            verbosity = self._display.verbosity  # pylint: disable=no-member
            module_result = _inprocess.run(engine, kind, module_args, check_mode, diff, journal, verbosity)
        else:
            module_result = self._execute_module(  # pylint: disable=no-member
                module_name=_connection.module_name(engine, kind),
                module_args=module_args,
                task_vars=task_vars,
            )
        module_result.pop("invocation", None)
        return module_result

    def write_trail(self, result, summary, audit_log, lines, done):
        """Append `lines` to the audit trail `audit_log` (`summary["audit_lines"]` says how
        many). When it cannot be written the task fails saying so and what was `done` on the
        host already (a failed task keeps its own message first): nothing done goes unsaid."""
        path = _files.controller_path(audit_log)
        try:
            summary["audit_lines"] = _trail.append_lines(path, lines)
        except OSError as exc:
            problem = (
                f"the audit trail {path} could not be written: {exc}; "
                "fix dbhygiene_audit_log (a writable path on the control node)"
            )
            summary["audit_error"] = problem  # the report must not say these sessions are in the trail
            if result.get("failed"):
                result["msg"] = f"{result.get('msg')}; {problem}"
            else:
                result["failed"] = True
                summary["failure"] = "error"
                result["msg"] = f"{done} but {problem}"
