# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugins' argument specs: each per-host plugin's is the spec of the engine modules
it runs (taken from the modules' own main()), as the plugins take it, plus the plugin's own
controller-side options, none declared twice; and every plugin's spec is what its documentation
says (ansible-test's validate-modules checks the engine modules' docs, not the doc stubs of the
action plugins)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import importlib
import os

import pytest
import yaml
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _argspec, _engines
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _action, _connection, _inprocess

PACKAGE = "ansible_collections.dbhygiene.sessions.plugins"
ACTION_DIR = os.path.join(os.path.dirname(os.path.dirname(_action.__file__)), "action")
# Every action plugin of the collection, by name.
PLUGINS = dict(
    (name, importlib.import_module(f"{PACKAGE}.action.{name}"))
    for name in sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(ACTION_DIR, "*.py")))
    if name != "__init__"
)
# The per-host plugins of the roles and the options that are theirs alone (controller side);
# every other option of theirs is an engine module's or the connection's.
OWN_OPTIONS = {
    "session_audit": {"thresholds"},
    "session_enforce": {"audit_log"},
    "session_drain": {"audit_log"},
    "session_timeouts": {"audit_log"},
}
# The plugins that run no engine module: their spec is theirs alone.
CONTROLLER_PLUGINS = ("policy_check", "session_report")
# What a doc entry says that a spec says too, and the value either has when unsaid.
COMPARED = {"type": "str", "required": False, "default": None, "choices": None, "elements": None}
# Choices found at run time (policy_check's roles: those on disk that have an argument spec),
# which the documentation names in the description instead.
FOUND_CHOICES = {("policy_check", "role")}


class _Spec(Exception):
    def __init__(self, spec):
        Exception.__init__(self, "the module's argument spec")
        self.spec = spec


def _capture(argument_spec, **_kwargs):
    raise _Spec(argument_spec)


def module_spec(engine, kind):
    """The argument spec the `<engine>_<kind>` module's main() gives AnsibleModule."""
    module = importlib.import_module(f"{PACKAGE}.modules.{_engines.ENGINES[engine].modules[kind]}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "new_module", _capture)
        with pytest.raises(_Spec) as captured:
            module.main()
    return captured.value.spec


def connection_spec(engine):
    driver = importlib.import_module(f"{PACKAGE}.module_utils.{_engines.ENGINES[engine].driver_module}")
    return driver.connection_argument_spec()


def module_options(engine, kind):
    """The `<engine>_<kind>` module's options besides the connection, as its main() has them."""
    connection = connection_spec(engine)
    return dict((name, option) for name, option in module_spec(engine, kind).items() if name not in connection)


def plugin_spec(name):
    plugin = PLUGINS[name]
    return getattr(plugin, "ARGUMENT_SPEC", None) or plugin.ActionModule.ARGUMENT_SPEC


def documented_options(name):
    """The options the doc stub `plugins/modules/<name>.py` documents, its fragments' included."""
    doc = yaml.safe_load(importlib.import_module(f"{PACKAGE}.modules.{name}").DOCUMENTATION)
    options = {}
    for fragment in doc.get("extends_documentation_fragment") or []:
        if fragment.startswith(_engines.COLLECTION + "."):
            short = fragment[len(_engines.COLLECTION) + 1 :]
            text = importlib.import_module(f"{PACKAGE}.doc_fragments.{short}").ModuleDocFragment.DOCUMENTATION
            options.update(yaml.safe_load(text).get("options") or {})
    options.update(doc.get("options") or {})
    return options


ENGINE_KINDS = [(engine, kind) for engine in _engines.ENGINE_NAMES for kind in _inprocess.KINDS]


@pytest.mark.parametrize("engine, kind", ENGINE_KINDS)
def test_the_controller_runs_take_each_modules_own_spec(engine, kind):
    """_inprocess.KINDS, which the plugins' specs read, is what each module's main() declares."""
    expected = module_spec(engine, kind)
    assert _inprocess._argument_spec(engine, kind) == expected  # pylint: disable=protected-access
    assert _action.module_options(engine, kind) == _argspec.role_spec(module_options(engine, kind))


def test_every_action_plugin_is_checked_below():
    assert sorted(PLUGINS) == sorted(list(OWN_OPTIONS) + list(CONTROLLER_PLUGINS))


@pytest.mark.parametrize("plugin", sorted(OWN_OPTIONS))
def test_each_per_host_plugins_spec_is_its_modules_plus_its_own_options(plugin):
    spec = plugin_spec(plugin)
    kind = PLUGINS[plugin].KIND
    expected = dict(_connection.CONNECTION_OPTIONS)
    expected["engine"] = {"type": "str", "required": True, "choices": list(_engines.ENGINE_NAMES)}
    expected["run_on"] = {"type": "str", "default": "controller", "choices": list(_connection.RUN_ON)}
    modules = {}
    for engine in _engines.ENGINE_NAMES:
        for name, option in _argspec.role_spec(module_options(engine, kind)).items():
            assert modules.setdefault(name, option) == option, f"{name}: the engines' modules disagree"
    assert not OWN_OPTIONS[plugin] & set(modules), "an option of the plugin's own is the module's"
    assert modules, kind
    expected.update(modules)
    expected.update((name, spec.get(name)) for name in OWN_OPTIONS[plugin])
    assert spec == expected


def test_the_plugins_take_the_modules_options_as_the_module_does_but_these():
    """Internal options are the plugins' to set; the waits go on only when set; a path stays a string."""
    sessions = _argspec.role_spec(module_options("postgresql", "sessions"))
    assert sessions == {
        "policy": {"type": "raw", "required": True},
        "wait_timeout": {"type": "float"},
        "host_timeout": {"type": "raw"},
    }
    drain = _argspec.role_spec(module_options("mysql", "drain"))
    assert set(drain) == {"databases", "state", "allow_users", "grace", "wait_timeout", "host_timeout"}
    assert drain["grace"] == module_options("mysql", "drain")["grace"]  # its default too
    assert _argspec.role_spec(module_options("mysql", "timeouts"))["persist_file"] == {"type": "str"}


def test_every_internal_option_is_a_modules_and_documented_so():
    """The list of internal options is neither stale nor short: exactly the modules' options
    whose documentation starts with "Internal"."""
    internal = set()
    for engine, kind in ENGINE_KINDS:
        documented = documented_options(_engines.ENGINES[engine].modules[kind])
        for name in module_options(engine, kind):
            if " ".join(documented[name]["description"]).startswith("Internal"):
                internal.add(name)
    assert internal == set(_argspec.INTERNAL_OPTIONS)
    assert set(_argspec.MODULE_DEFAULT_OPTIONS) <= set(module_options("mysql", "sessions"))


def test_an_option_declared_again_by_a_plugin_is_refused():
    with pytest.raises(ValueError) as error:
        _action.host_argument_spec("sessions", wait_timeout={"type": "float"}, audit_log={"type": "path"})
    assert str(error.value).startswith("wait_timeout: already an option of the sessions modules")
    with pytest.raises(ValueError, match="^run_on: "):
        _action.host_argument_spec("drain", run_on={"type": "str"})


def test_each_module_option_set_goes_to_the_engines_module_that_has_it():
    params = dict.fromkeys(plugin_spec("session_timeouts"))
    params.update(engine="mysql", timeouts={"server": {}}, persist_file="/etc/my.cnf.d/t.cnf", login_user="u")
    params.update(audit_log="/tmp/audit.jsonl", run_on="host")
    assert _action.module_args("mysql", "timeouts", params) == {
        "login_user": "u",
        "timeouts": {"server": {}},
        "persist_file": "/etc/my.cnf.d/t.cnf",
    }
    assert _action.module_args("postgresql", "timeouts", params) == {"login_user": "u", "timeouts": {"server": {}}}
    drain = {"databases": ["b"], "state": "open", "allow_users": [], "grace": "5s", "wait_timeout": None}
    assert _action.module_args("postgresql", "drain", dict(drain, settle_keys=["k"])) == {
        "databases": ["b"],
        "state": "open",
        "allow_users": [],
        "grace": "5s",
    }


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_each_plugins_spec_is_what_its_documentation_says(plugin):
    spec = plugin_spec(plugin)
    documented = documented_options(plugin)
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        for key, unsaid in COMPARED.items():
            if key == "choices" and (plugin, name) in FOUND_CHOICES:
                described = " ".join(documented[name]["description"])
                assert all(f"V({choice})" in described for choice in option["choices"]), name
                continue
            doc_value = documented[name].get(key, unsaid)
            spec_value = option.get(key, unsaid)
            assert doc_value == spec_value, f"{name}.{key}: documented {doc_value!r}, spec {spec_value!r}"
