# -*- coding: utf-8 -*-
"""inf, -inf and nan in every number option (int, float, and the roles' raw timeouts) of the
roles, their action plugins and the engine modules: a message naming the option and the value,
no traceback, before any connection. Parametrized over the argument specs themselves, so a
new number option is covered without a change here."""

import contextlib
import glob
import json
import os

import pytest
import yaml
from ansible.module_utils import basic
from ansible_collections.dbhygiene.sessions.plugins.action import (
    policy_check,
    session_audit,
    session_drain,
    session_enforce,
    session_report,
    session_timeouts,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _argspec, _engines
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import DURATION_CONDITIONS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._limits import LIMIT_KEYS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._policy import parse_policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _inprocess, _report_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# As -e gives them (text), and as YAML / JSON give them (floats).
NOT_FINITE = ["inf", "-inf", "nan", "+Infinity", " NaN ", float("inf"), float("-inf"), float("nan")]
# Unreachable on purpose: were a number let through, the failure would be a connection's, not ours.
NOWHERE = {"login_host": "127.0.0.9", "login_unix_socket": None}
# What each purpose requires besides numbers.
REQUIRED = {
    "policy": {"rules": [{"name": "r", "users": ["x"]}]},
    "databases": ["billing"],
    "timeouts": {"server": {"statement": "1h"}},
}


def _shown(value):
    return repr(value)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("inf", "is not a finite number"),
        ("-Infinity", "is not a finite number"),
        (" nan\n", "is not a finite number"),
        (float("-inf"), "is not a finite number"),
        ("1e999", "is too large"),
        (10**400, "is too large"),
        (5, None),
        ("5", None),
        (2.5, None),
        ("30s", None),  # no number at all: the option's own type check says so
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_number_problem(value, problem):
    assert _argspec.number_problem(value) == problem


# ------------------------------------------------------------ the engine modules
MODULE_CASES = [
    (engine, kind, name)
    for engine in _engines.ENGINE_NAMES
    for kind in _inprocess.KINDS
    for name, option in sorted(_inprocess._argument_spec(engine, kind).items())  # pylint: disable=protected-access
    if option.get("type") in _argspec.NUMBER_TYPES
]


def _module_args(engine, kind, name, value):
    spec = _inprocess._argument_spec(engine, kind)  # pylint: disable=protected-access
    args = dict((key, REQUIRED[key]) for key, option in spec.items() if option.get("required"))
    args.update(NOWHERE)
    args["connect_timeout"] = 1
    args[name] = value
    return dict((key, item) for key, item in args.items() if item is not None)


def test_every_module_has_number_options_and_the_timeouts_are_among_them():
    assert {
        "login_port",
        "connect_timeout",
        "query_timeout",
        "wait_timeout",
        "host_timeout",
    } <= _inprocess.NUMBER_OPTIONS
    assert len(MODULE_CASES) >= 2 * len(_inprocess.KINDS) * 3


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("engine, kind, name", MODULE_CASES)
def test_every_module_number_option_refuses_a_non_finite_value_in_process(engine, kind, name, value):
    result = _inprocess.run(engine, kind, _module_args(engine, kind, name, value))
    assert result["failed"] is True
    assert result["msg"].startswith(f"{name}: ") and "is not a finite number" in result["msg"], result["msg"]
    shown = value if isinstance(value, str) else json.loads(json.dumps(value))
    assert _shown(shown) in result["msg"] or str(value) in result["msg"]


@contextlib.contextmanager
def _module_args_given(args):
    """AnsibleModule reads `args` as a module's arguments (ansible-core 2.19+ and older)."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core 2.16
        previous = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()  # pylint: disable=protected-access
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = previous  # pylint: disable=protected-access
        return
    with patch_module_args(args):
        yield


def _module_main(engine, kind):
    name = _engines.ENGINES[engine].modules[kind]
    module = __import__(f"ansible_collections.dbhygiene.sessions.plugins.modules.{name}", fromlist=["main"])
    return module.main


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("engine, kind, name", MODULE_CASES)
def test_every_module_fails_naming_the_option_and_the_value(engine, kind, name, value, capsys):
    """The module itself (AnsibleModule, as on a database host): no OverflowError traceback."""
    with _module_args_given(_module_args(engine, kind, name, value)):
        with pytest.raises(SystemExit) as exit_:
            _module_main(engine, kind)()
    assert exit_.value.code == 1
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"] == f"{name}: {value!r} is not a finite number", result["msg"]


# ------------------------------------------------------------ the action plugins
def _action_spec(plugin):
    """The spec the plugin's begin() checks: its module's ARGUMENT_SPEC, else its class's."""
    return getattr(plugin, "ARGUMENT_SPEC", None) or plugin.ActionModule.ARGUMENT_SPEC


ACTIONS = dict(
    (plugin.__name__.rsplit(".", 1)[-1], plugin)
    for plugin in (policy_check, session_audit, session_drain, session_enforce, session_report, session_timeouts)
)
ACTION_CASES = [
    (plugin, name)
    for plugin in sorted(ACTIONS)
    for name, option in sorted(_action_spec(ACTIONS[plugin]).items())
    if option.get("type") in _argspec.NUMBER_TYPES
]


def test_the_action_plugins_have_number_options():
    assert ("session_report", "keep") in ACTION_CASES and ("session_audit", "login_port") in ACTION_CASES


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("plugin, name", ACTION_CASES)
def test_every_action_plugin_number_option_is_named_with_its_value(plugin, name, value):
    spec = _action_spec(ACTIONS[plugin])
    assert _argspec.number_problems(spec, {name: value}) == [f"{name}: {value!r} is not a finite number"]


# ------------------------------------------------------------ the roles
def _role_options():
    options = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))):
        with open(path) as handle:
            options[path.split(os.sep)[-3]] = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    return options


ROLE_OPTIONS = _role_options()
ROLE_CASES = [(role, name) for role, options in ROLE_OPTIONS.items() for name in policy_check.number_variables(options)]


def test_the_roles_number_variables_include_their_raw_timeouts():
    assert sorted(ROLE_OPTIONS) == ["audit", "drain", "enforce", "timeouts"]
    for role, options in ROLE_OPTIONS.items():
        numbers = policy_check.number_variables(options)
        assert {"dbhygiene_login_port", "dbhygiene_connect_timeout", "dbhygiene_query_timeout"} <= set(numbers), role
        assert "dbhygiene_policy" not in numbers and "dbhygiene_drain_grace" not in numbers


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("role, name", ROLE_CASES)
def test_every_role_number_variable_is_named_with_its_value(role, name, value):
    problems = policy_check.argument_problems(ROLE_OPTIONS[role], {name: value, "dbhygiene_engine": "postgresql"})
    assert problems == [f"{name}: {value!r} is not a finite number"]


# The roles' durations and counts inside their mappings and the drain's grace: their own
# parsers refuse them, naming the field.
def _policy_with(key, value):
    if key in LIMIT_KEYS:
        return {"rules": [{"name": "r", "users": ["x"]}], "limits": {key: value}}
    if key == "grace":
        return {"grace": value, "rules": [{"name": "r", "users": ["x"]}]}
    return {"rules": [{"name": "r", "users": ["x"], key: value}]}


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize(
    "key",
    DURATION_CONDITIONS
    + ("blocking_at_least", "grace", "keep", "each_running_longer_than", "any_running_longer_than")
    + ("group_size_at_least",)
    + LIMIT_KEYS,
)
def test_every_number_of_the_policy_refuses_a_non_finite_value(key, value):
    with pytest.raises(PolicyError) as error:
        parse_policy(_policy_with(key, value))
    assert str(error.value.field).endswith(key)


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("key", _report_model.THRESHOLD_KEYS)
def test_every_audit_threshold_refuses_a_non_finite_value(key, value):
    with pytest.raises(PolicyError) as error:
        _report_model.parse_thresholds({key: value})
    assert error.value.field == f"dbhygiene_audit_thresholds.{key}"


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_the_drain_grace_refuses_a_non_finite_value(value):
    problems = _change_window.variable_problems({"dbhygiene_drain_databases": ["x"], "dbhygiene_drain_grace": value})
    assert len(problems) == 1 and problems[0].startswith("dbhygiene_drain_grace: ")


@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("engine", _engines.ENGINE_NAMES)
def test_every_timeout_of_the_timeouts_role_refuses_a_non_finite_value(engine, value):
    for level in ({"server": {"statement": value}}, {"roles": {"app": {"idle_session": value}}}):
        result = _inprocess.run(engine, "timeouts", dict(NOWHERE, connect_timeout=1, timeouts=level))
        assert result["failed"] is True and "invalid duration" in result["msg"], result["msg"]
