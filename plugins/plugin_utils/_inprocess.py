# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_on: controller, in process: an engine module's work done inside Ansible's
own worker for the host, with no module process and no connection plugin.

The engine module's own argument spec and its own ``main()`` body
(``_runner.run_sessions_module`` / ``run_info_module``) run here, on a stand-in
for AnsibleModule, so that the result is the one the module would return: same
defaults and environment fallbacks, same validation messages, same result keys,
no_log values removed the same way.

The drivers are imported with this file, that is when the strategy loads the
action plugin's class in the main ``ansible-playbook`` process: every forked
worker inherits them instead of importing them again for each host.

Private to the collection.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import importlib
import json
import sys
from typing import Any, Callable, NoReturn

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _argspec,
    _drain,
    _drain_request,
    _engines,
    _runner,
    _timeouts,
)

_MODULE_UTILS = "ansible_collections.dbhygiene.sessions.plugins.module_utils"


class _Engine(object):
    """An engine of the registry with its driver and its drain's rights imported."""

    def __init__(self, name: str, entry: _engines.Engine) -> None:
        self.name = name
        self.driver_module = importlib.import_module(f"{_MODULE_UTILS}.{entry.driver_module}")
        self.driver_class = getattr(self.driver_module, entry.driver_class)
        self.drain_rights = getattr(
            importlib.import_module(f"{_MODULE_UTILS}.{entry.drain_module}"), entry.drain_rights
        )
        self.available = bool(getattr(self.driver_module, entry.driver_available))
        self.library: str = entry.library
        self.package: str = entry.package


ENGINES = dict((name, _Engine(name, entry)) for name, entry in _engines.ENGINES.items())


class _Exit(Exception):
    """exit_json / fail_json of the stand-in: the result, and the end of the run."""

    def __init__(self, result: dict[str, Any]) -> None:
        Exception.__init__(self, "module exit")
        self.result = result


class _InProcessModule(object):
    """The part of AnsibleModule that the runner's run_*_module functions use."""

    def __init__(
        self,
        params: dict[str, Any],
        check_mode: bool,
        diff: bool,
        journal: object = None,
        verbosity: int = 0,
    ) -> None:
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self._verbosity = verbosity  # as AnsibleModule has it (-vvv: 3)
        self.journal = journal  # the enforce role's write-ahead trail hook (_ending.Journal), or None
        self.warnings: list[str] = []

    def warn(self, warning: str) -> None:
        """As AnsibleModule.warn: the result's `warnings`, which Ansible shows."""
        self.warnings.append(warning)

    def _result(self, result: dict[str, Any]) -> _Exit:
        if self.warnings:
            result["warnings"] = list(result.get("warnings") or []) + self.warnings
        return _Exit(result)

    def exit_json(self, **result: Any) -> NoReturn:
        raise self._result(result)

    def fail_json(self, msg: str, **result: Any) -> NoReturn:
        result.update(failed=True, msg=msg)
        raise self._result(result)


def missing_driver(engine: str) -> dict[str, Any] | None:
    """The failure of a host whose driver the controller's Python cannot import, or None."""
    spec = ENGINES[engine]
    if spec.available:
        return None
    return {
        "failed": True,
        "msg": (
            f"dbhygiene_run_on is controller, but the Python library {spec.library} (the {engine} driver) cannot be "
            f"imported by the controller's Python {sys.executable}, which runs ansible-playbook; install it there "
            f"with: {sys.executable} -m pip install {spec.package} "
            "(or set dbhygiene_run_on: host to run the module on the database host)"
        ),
    }


def _run_sessions(module: _InProcessModule, engine: _Engine) -> None:
    _runner.run_sessions_module(module, engine.driver_class, engine.driver_module.open_driver)


def _run_info(module: _InProcessModule, engine: _Engine) -> None:
    _runner.run_info_module(module, engine.driver_module.open_driver, engine.driver_class)


def _run_drain(module: _InProcessModule, engine: _Engine) -> None:
    _drain.run_drain_module(module, engine.driver_class, engine.driver_module.open_driver, engine.drain_rights)


def _run_timeouts(module: _InProcessModule, engine: _Engine) -> None:
    _timeouts.run_timeouts_module(module, engine.name, engine.driver_module.open_driver)


# The module purposes (the registry's) that run in process: their options besides the
# connection (a function of the engine's name), and their main() body.
KINDS: dict[str, tuple[Callable[[str], dict[str, Any]], Callable[[_InProcessModule, _Engine], None]]] = {
    "sessions": (lambda engine: _argspec.sessions_argument_spec(), _run_sessions),
    "session_info": (lambda engine: _argspec.info_argument_spec(), _run_info),
    "drain": (lambda engine: _drain_request.drain_argument_spec(), _run_drain),
    "timeouts": (_timeouts.argument_spec, _run_timeouts),
}


def _argument_spec(engine: str, kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = ENGINES[engine].driver_module.connection_argument_spec()
    spec.update(KINDS[kind][0](engine))
    return spec


def number_problems(engine: str, kind: str, module_args: dict[str, Any]) -> list[str]:
    """Messages naming each number option of the `<engine>_<kind>` module whose value in
    `module_args` is inf, -inf, nan or too large (see _argspec.number_problem)."""
    problems: list[str] = _argspec.number_problems(_argument_spec(engine, kind), module_args)
    return problems


# The names of every engine module's number options (int, float), of every purpose.
NUMBER_OPTIONS = frozenset(
    name
    for engine in ENGINES
    for kind in KINDS
    for name, option in _argument_spec(engine, kind).items()
    if option.get("type") in _argspec.NUMBER_TYPES
)


def _no_log_values(spec: dict[str, Any], params: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    for name, option in spec.items():
        value = params.get(name)
        if option.get("no_log") and value not in (None, ""):
            values.add(str(value))
    return values


def run(
    engine: str,
    kind: str,
    module_args: dict[str, Any],
    check_mode: object = False,
    diff: object = False,
    journal: object = None,
    verbosity: int = 0,
) -> dict[str, Any]:
    """The result the `<engine>_<kind>` module would return for `module_args` (kind: one
    of KINDS), computed in this process; `journal` (sessions, drain) is the runner's
    write-ahead hook; `verbosity` the play's (-vvv: 3), as a module gets it."""
    if kind not in KINDS:  # a bug of the calling plugin: fail this host alone
        return {"failed": True, "msg": f"the {engine} {kind} module cannot run on the controller (run_on: host can)"}
    missing = missing_driver(engine)
    if missing:
        return missing
    spec = _argument_spec(engine, kind)
    # As the module would receive them: plain JSON types (no templating tags; a driver
    # may insist on type(port) is int).
    plain_args = json.loads(json.dumps(module_args, default=str))
    # Numbers first, as the module does (_argspec.new_module), defaults and environment
    # fallbacks included: ansible-core converts an inf to an int with an OverflowError.
    validated = ArgumentSpecValidator(_argspec.numbers_as_raw(spec)).validate(plain_args)
    numbers = _argspec.number_problems(spec, validated.validated_parameters)
    if not numbers:
        validated = ArgumentSpecValidator(spec).validate(plain_args)
    params = validated.validated_parameters
    result: dict[str, Any]
    if numbers or validated.error_messages:
        result = {"failed": True, "msg": "; ".join(numbers or validated.error_messages)}
    else:
        module = _InProcessModule(params, bool(check_mode), bool(diff), journal, verbosity)
        try:
            KINDS[kind][1](module, ENGINES[engine])
        except _Exit as done:
            result = done.result
        except Exception as exc:  # a bug: fail this host alone, as a crashed module would
            result = {"failed": True, "msg": f"the {engine} {kind} run failed: {type(exc).__name__}: {exc}"}
        else:  # pragma: no cover - the run_* functions always exit
            result = {"failed": True, "msg": f"the {engine} {kind} run ended without a result"}
    # As the module's JSON would come back: plain JSON types, no_log values masked.
    result = remove_values(result, _no_log_values(spec, params))
    returned: dict[str, Any] = json.loads(json.dumps(result, default=str))
    return returned
