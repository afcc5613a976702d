# -*- coding: utf-8 -*-
"""run_on controller, in process: the module's own argument handling and exits,
without a database (everything here fails or is refused before connecting)."""

import sys

import pytest
from ansible_collections.dbhygiene.sessions.plugins.action import policy_check
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _inprocess

POLICY = {"name": "p", "rules": [{"name": "ghost", "states": ["idle"], "idle_longer_than": "30m"}]}


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_bad_policy_fails_naming_the_field_and_the_password_never_shows(engine):
    args = {"login_host": "127.0.0.1", "login_password": "s3cret-pw", "policy": {"rules": [{"name": "s3cret-pw"}]}}
    result = _inprocess.run(engine, "sessions", args)
    assert result["failed"] is True and "field" in result
    assert "s3cret-pw" not in repr(result)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_option_types_are_checked_as_the_module_checks_them(engine):
    result = _inprocess.run(engine, "sessions", {"login_port": "not-a-port", "policy": POLICY})
    assert result["failed"] is True
    assert "login_port" in result["msg"]


def test_info_with_a_bad_policy_fails_before_connecting():
    result = _inprocess.run("postgresql", "session_info", {"login_port": 1, "policy": "{not: [valid"})
    assert result["failed"] is True and result["field"] == "policy"


def test_a_missing_driver_names_the_interpreter_and_the_pip_command(monkeypatch):
    monkeypatch.setattr(_inprocess.ENGINES["mysql"], "available", False)
    result = _inprocess.run("mysql", "sessions", {"policy": POLICY})
    assert result["failed"] is True
    assert "PyMySQL" in result["msg"] and sys.executable + " -m pip install PyMySQL" in result["msg"]
    assert "dbhygiene_run_on: host" in result["msg"]
    assert _inprocess.missing_driver("postgresql") is None


def test_the_stand_in_module_exits_like_ansiblemodule():
    module = _inprocess._InProcessModule({"a": 1}, True, False)
    with pytest.raises(_inprocess._Exit) as done:
        module.fail_json(msg="boom", field="x")
    assert done.value.result == {"failed": True, "msg": "boom", "field": "x"}
    with pytest.raises(_inprocess._Exit) as done:
        module.exit_json(changed=False)
    assert done.value.result == {"changed": False}


@pytest.mark.parametrize("role", ["enforce", "audit"])
def test_role_arguments_are_checked_against_the_roles_own_specs(role):
    options = policy_check.role_options(role)
    assert "dbhygiene_run_on" in options and "dbhygiene_engine" in options
    good = {"dbhygiene_engine": "postgresql", "dbhygiene_policy": POLICY, "dbhygiene_run_on": "host"}
    assert policy_check.argument_problems(options, good) == []
    bad = dict(good, dbhygiene_run_on="elsewhere", dbhygiene_login_port="x", dbhygiene_login_password="pw-xyz")
    problems = " ".join(policy_check.argument_problems(options, bad))
    assert "dbhygiene_run_on" in problems and "elsewhere" in problems and "dbhygiene_login_port" in problems


def test_another_hosts_variables_keep_the_play_layer_and_take_its_own_layer():
    """policy_check sees each host's variables as the task would there, from public data:
    the play/role/extra layer from the current host's task variables, the inventory from
    the host's own layer, the role default where the host has no value of its own."""
    current = {"inventory_hostname": "pg1", "dbhygiene_engine": "postgresql", "dbhygiene_login_host": "10.0.0.1"}
    other = {"inventory_hostname": "my1", "dbhygiene_engine": "mysql", "dbhygiene_config_file": ""}
    task_vars = dict(current, dbhygiene_policy={"rules": []}, dbhygiene_run_on="controller")
    # A play var over the inventory: the current host's inventory value is hidden, so the play's holds for all.
    current["dbhygiene_run_on"] = "host"
    other["dbhygiene_run_on"] = "host"
    defaults = {"dbhygiene_login_host": "{{ ansible_host | default(inventory_hostname) }}"}
    variables = policy_check.host_variables(task_vars, current, other, defaults)
    assert variables["inventory_hostname"] == "my1"
    assert variables["dbhygiene_engine"] == "mysql"
    assert variables["dbhygiene_config_file"] == ""
    assert variables["dbhygiene_policy"] == {"rules": []}  # play level
    assert variables["dbhygiene_run_on"] == "controller"  # the play var wins over both inventories
    assert variables["dbhygiene_login_host"] == defaults["dbhygiene_login_host"]  # not set for my1: the default
    assert (
        policy_check.host_variables(task_vars, current, dict(other, dbhygiene_login_host="x"), {})[
            "dbhygiene_login_host"
        ]
        == "x"
    )
    assert "dbhygiene_login_host" not in policy_check.host_variables(task_vars, current, other, {})


def test_policy_check_takes_the_collections_roles_with_an_argument_spec():
    assert {"audit", "enforce"} <= set(policy_check.ActionModule.ARGUMENT_SPEC["role"]["choices"])
    assert policy_check.role_defaults("enforce")["dbhygiene_run_on"] == "controller"


def test_a_purpose_without_an_in_process_run_fails_the_host_alone():
    result = _inprocess.run("postgresql", "no_such_purpose", {})
    assert result["failed"] is True and "run_on: host" in result["msg"]
