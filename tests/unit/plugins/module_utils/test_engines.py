# -*- coding: utf-8 -*-
"""The engine registry is the one source of the connection options: the drivers, the
action plugins, every role's meta/argument_specs.yml and the doc fragments agree with it."""

import glob
import os

import pytest
import yaml
from ansible.module_utils.common.parameters import env_fallback
from ansible_collections.dbhygiene.sessions.plugins.doc_fragments import (
    _mysql_connection,
    _postgresql_connection,
    _role_connection,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _engines, _timeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver as postgresql_driver
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection, _inprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# The registry's driver module of each engine (as run_on: controller imports it).
DRIVERS = dict((name, _inprocess.ENGINES[name].driver_module) for name in _engines.ENGINES)
FRAGMENTS = {"postgresql": _postgresql_connection, "mysql": _mysql_connection}
# Role variables that are connection settings by their name even if the registry lacks them.
CONNECTION_PREFIXES = ("dbhygiene_login_", "dbhygiene_ssl_", "dbhygiene_ca_", "dbhygiene_client_")


def _fragment_options(fragment):
    return yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]


def _role_specs():
    """(role, entry point, options) of every role under roles/."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))):
        role = path.split(os.sep)[-3]
        with open(path) as handle:
            specs = yaml.safe_load(handle)["argument_specs"]
        for entry_point, spec in specs.items():
            found.append((role, entry_point, spec.get("options") or {}))
    return found


def _connection_entries(options):
    role_names = set("dbhygiene_" + name for name in _engines.role_options())
    return dict((n, o) for n, o in options.items() if n in role_names or n.startswith(CONNECTION_PREFIXES))


ROLE_SPECS = [spec for spec in _role_specs() if _connection_entries(spec[2])]


def test_the_roles_with_connection_entries_are_found():
    roles = set(role for role, _entry, _options in ROLE_SPECS)
    assert {"audit", "enforce"} <= roles


@pytest.mark.parametrize("role, entry_point, options", ROLE_SPECS, ids=[f"{r}:{e}" for r, e, _o in ROLE_SPECS])
def test_each_roles_connection_entries_are_the_registrys(role, entry_point, options):
    entries = _connection_entries(options)
    expected = dict(("dbhygiene_" + name, option) for name, option in _engines.role_options().items())
    assert sorted(set(expected) - set(entries)) == [], f"{role} lacks registry options"
    assert sorted(set(entries) - set(expected)) == [], f"{role} has options the registry lacks"
    for name, option in expected.items():
        entry = entries[name]
        assert entry.get("type") == option.role_type, f"{role} {name}: type"
        assert entry.get("no_log") == option.no_log, f"{role} {name}: no_log"


def test_a_disagreeing_role_entry_is_caught():
    """The check above fails on a wrong type, a lost no_log, a missing or an extra entry."""
    options = dict(ROLE_SPECS[0][2])
    expected = set("dbhygiene_" + name for name in _engines.role_options())
    options["dbhygiene_login_password"] = {"type": "str"}
    options["dbhygiene_login_sslmode"] = {"type": "str"}
    del options["dbhygiene_ca_cert"]
    entries = _connection_entries(options)
    assert "dbhygiene_login_sslmode" in set(entries) - expected
    assert "dbhygiene_ca_cert" in expected - set(entries)
    assert entries["dbhygiene_login_password"].get("no_log") != _engines.role_options()["login_password"].no_log


@pytest.mark.parametrize("engine", list(_engines.ENGINES))
def test_each_engine_fragment_documents_exactly_the_registrys_options(engine):
    documented = _fragment_options(FRAGMENTS[engine])
    entry = _engines.ENGINES[engine]
    assert sorted(documented) == sorted(entry.option_names())
    for option in entry.options:
        doc = documented[option.name]
        assert doc.get("type") == option.type, option.name
        assert doc.get("default") == option.default, option.name
        assert doc.get("choices") == (list(option.choices) if option.choices is not None else None), option.name
        assert doc.get("aliases", []) == list(option.aliases), option.name
        for variable in option.env:
            assert f"E({variable})" in " ".join(doc["description"]), f"{option.name}: {variable} undocumented"


def test_the_role_fragment_documents_exactly_the_action_plugins_options():
    documented = _fragment_options(_role_connection)
    engine, run_on = documented.pop("engine"), documented.pop("run_on")
    assert engine["choices"] == list(_engines.ENGINE_NAMES)
    assert run_on["choices"] == list(_connection.RUN_ON)
    assert sorted(documented) == sorted(_connection.CONNECTION_OPTIONS)
    for name, spec in _connection.CONNECTION_OPTIONS.items():
        assert documented[name]["type"] == spec["type"], name


def test_options_shared_by_engines_agree_on_their_role_type_and_no_log():
    for name in _engines.role_options():
        seen = set(
            (option.role_type, option.no_log)
            for entry in _engines.ENGINES.values()
            for option in entry.options
            if option.name == name
        )
        assert len(seen) == 1, name


@pytest.mark.parametrize("engine", list(_engines.ENGINES))
def test_each_drivers_spec_is_the_registrys_with_ansibles_env_fallback(engine):
    assert DRIVERS[engine].connection_argument_spec() == _engines.ENGINES[engine].connection_spec(env_fallback)


def test_each_registered_driver_class_is_its_engines():
    for name, entry in _engines.ENGINES.items():
        driver = _inprocess.ENGINES[name].driver_class
        assert driver.engine == name
        assert driver.unsupported_conditions == entry.unsupported_conditions


def test_each_engine_module_in_plugins_is_in_the_registry_and_its_action_group():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        groups = yaml.safe_load(handle)["action_groups"]
    for name, entry in _engines.ENGINES.items():
        on_disk = set(
            os.path.basename(path)[: -len(".py")]
            for path in glob.glob(os.path.join(ROOT, "plugins", "modules", name + "_*.py"))
        )
        assert on_disk <= set(entry.modules.values())
        assert {entry.modules["session_info"], entry.modules["sessions"]} <= on_disk
        assert on_disk <= set(groups[name])


def test_module_names_and_unknown_engines():
    assert _connection.module_name("mysql", "sessions") == "dbhygiene.sessions.mysql_sessions"
    assert _connection.module_name("postgresql", "drain") == "dbhygiene.sessions.postgresql_drain"
    assert _connection.ENGINES == ("postgresql", "mysql")
    with pytest.raises(ValueError, match="unknown engine 'oracle': expected one of postgresql, mysql"):
        _engines.module_name("oracle", "sessions")
    assert _engines.unsupported_conditions("oracle") == frozenset()


def _tasks_passing_connection_options():
    """(role, task name, args) of every role task that passes `login_host` on."""
    found = []

    def walk(role, tasks):
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(role, task.get(key))
            for action, args in task.items():
                if isinstance(args, dict) and "login_host" in args:
                    found.append((role, f"{task.get('name')} ({action})", args))

    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml"))):
        with open(path) as handle:
            walk(path.split(os.sep)[-3], yaml.safe_load(handle))
    return found


TASKS = _tasks_passing_connection_options()


def test_the_role_tasks_passing_connection_options_are_found():
    assert {"audit", "enforce"} <= set(role for role, _task, _args in TASKS)


@pytest.mark.parametrize("role, task, args", TASKS, ids=[f"{r}:{t}" for r, t, _a in TASKS])
def test_each_role_task_passes_every_connection_option_from_its_variable(role, task, args):
    names = set(_connection.CONNECTION_OPTIONS)
    assert sorted(names - set(args)) == [], f"{role}: {task} does not pass them"
    for name in names:
        assert f"dbhygiene_{name} " in args[name] or f"dbhygiene_{name}|" in args[name], f"{role}: {task}: {name}"


def test_a_condition_the_engine_cannot_evaluate_is_refused_in_the_same_words_on_both_sides():
    from ansible_collections.dbhygiene.sessions.plugins.module_utils import _policy, _runner
    from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError

    one = _policy.parse_policy({"name": "p", "rules": [{"connected_longer_than": "1h"}]})
    said = (
        "policy 'p' uses connected_longer_than, which mysql cannot evaluate; remove it from the rules for mysql hosts"
    )
    assert _engines.check_supported(one, "mysql") == said
    with pytest.raises(SessionError) as raised:
        _runner.require_supported(one, my_driver.MySQLDriver)
    assert str(raised.value) == said
    assert _engines.check_supported(one, "postgresql") is None
    _runner.require_supported(one, postgresql_driver.PostgreSQLDriver)
    assert _engines.check_supported(one, "oracle") is None
    two = _policy.parse_policy({"name": "q", "rules": [{"connected_longer_than": "1h", "idle_longer_than": "1m"}]})
    assert _engines.check_supported(two, "mysql", ["connected_longer_than", "idle_longer_than"]) == (
        "policy 'q' uses connected_longer_than, idle_longer_than, which mysql cannot evaluate; "
        "remove them from the rules for mysql hosts"
    )


@pytest.mark.parametrize("engine", list(_engines.ENGINES))
def test_each_engines_change_window_parts_are_the_ones_its_registry_entry_names(engine):
    entry = _engines.ENGINES[engine]
    rights = _inprocess.ENGINES[engine].drain_rights
    assert rights.__module__.endswith("." + entry.drain_module) and rights.__name__ == entry.drain_rights
    timeouts = _timeouts.engine_timeouts(engine)
    assert timeouts.engine == engine
    assert f"{timeouts.__module__}.{timeouts.__name__}".endswith("." + entry.timeouts_class)


def test_the_timeouts_modules_options_besides_the_connection():
    assert _timeouts.argument_spec("postgresql") == {"timeouts": {"type": "dict", "required": True}}
    assert _timeouts.argument_spec("mysql") == {
        "timeouts": {"type": "dict", "required": True},
        "persist_file": {"type": "path"},
    }
