# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate, once for the whole play and before any database is contacted, every
host's variables: against the role's own meta/argument_specs.yml (what Ansible's
per-host role validation would do, in one task instead of one per host) and the
policy. Documentation: plugins/modules/policy_check.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _argspec, _engines, _errors, _policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _action,
    _change_window,
    _connection,
    _files,
    _inprocess,
    _report_html,
    _report_model,
)

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")


def _roles_with_specs():
    """The collection's roles that have a meta/argument_specs.yml (audit, enforce, ...)."""
    if not os.path.isdir(ROLES_DIR):  # pragma: no cover - the collection ships its roles
        return []
    return sorted(
        name
        for name in os.listdir(ROLES_DIR)
        if os.path.isfile(os.path.join(ROLES_DIR, name, "meta", "argument_specs.yml"))
    )


_UNSET = object()


def _names(hosts, limit=5):
    shown = ", ".join(hosts[:limit])
    return shown + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def _plain(value):
    """Templated data as plain JSON types (stable to compare, no tagged strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def role_options(role):
    """The options of the role's `main` entry point, read from its meta/argument_specs.yml
    (the one source: ansible-doc shows it, and this check validates against it)."""
    with open(os.path.join(ROLES_DIR, role, "meta", "argument_specs.yml")) as handle:
        specs = yaml.safe_load(handle)
    return specs["argument_specs"]["main"].get("options") or {}


def role_defaults(role):
    """The role's defaults/main.yml (empty when it has none)."""
    path = os.path.join(ROLES_DIR, role, "defaults", "main.yml")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def _from_own_layer(name, task_vars, layer):
    """Whether the task's value of `name` is the one of the host's own layer."""
    if name not in layer or name not in task_vars:
        return False
    mine, seen = layer[name], task_vars[name]
    return mine is seen or mine == seen


def host_variables(task_vars, current_layer, host_layer, defaults):
    """The variables another host has for this task, from public data only.

    `task_vars`: this task's variables on the current host (every layer resolved);
    `current_layer` / `host_layer`: the host's own variables (inventory, facts, set_fact,
    extra vars: ``hostvars.raw_get``) of the current host and of the other host;
    `defaults`: the role's defaults.

    Play, role and task variables are the same on every host and rank above the
    inventory. So a name the current host takes from its own layer, the other host
    takes from its own (or, lacking it, from the role's defaults); every other name
    keeps the task's value.
    """
    variables = dict(task_vars)
    for name, value in host_layer.items():
        if name not in task_vars or _from_own_layer(name, task_vars, current_layer):
            variables[name] = value
    for name in current_layer:
        if name not in host_layer and _from_own_layer(name, task_vars, current_layer):
            if name in defaults:
                variables[name] = defaults[name]
            else:
                variables.pop(name, None)
    return variables


def number_variables(options):
    """The role's options that are numbers: typed int or float, or raw ones (the timeouts)
    passed on as an engine module's number option of the same name without the prefix."""
    return dict(
        (name, option)
        for name, option in options.items()
        if option.get("type") in _argspec.NUMBER_TYPES
        or (
            option.get("type") == "raw"
            and name.startswith("dbhygiene_")
            and name[len("dbhygiene_") :] in _inprocess.NUMBER_OPTIONS
        )
    )


def argument_problems(options, values):
    """Error messages of validating `values` (the variables a host has) against `options`,
    with no_log values masked, as Ansible's role validation would give them; first, each
    number that is inf, -inf, nan or too large (ansible-core's int conversion raises
    OverflowError on them), named with its value."""
    numbers = dict((name, dict(option, type="float")) for name, option in number_variables(options).items())
    messages = _argspec.number_problems(numbers, values)
    if not messages:
        messages = ArgumentSpecValidator(options).validate(dict(values)).error_messages
    secrets = set(str(values[n]) for n, o in options.items() if o.get("no_log") and values.get(n) not in (None, ""))
    return [remove_values(message, secrets) for message in messages]


class _Resolved(object):
    """Variables of one host, templated on access."""

    def __init__(self, variables, templar):
        self._variables = variables
        self._templar = templar

    def __contains__(self, name):
        return name in self._variables

    def __getitem__(self, name):
        return self._templar.template(self._variables[name])


class ActionModule(_action.ActionMixin, ActionBase):
    ARGUMENT_SPEC = {
        "hosts": {"type": "list", "elements": "str"},
        "policy_required": {"type": "bool", "default": True},
        # The role whose meta/argument_specs.yml every host's variables are validated against.
        "role": {"type": "str", "choices": _roles_with_specs()},
    }
    FAILURE = AnsibleActionFail
    _requires_connection = False

    def _host_context(self, task_vars, current_layer, host, defaults):
        """A mapping of `host`'s variables as this task would see them on that host.

        hostvars alone misses play vars, role params and role vars (which take
        precedence over inventory): they come from this task's own variables
        (`host_variables`), templated in `host`'s context. `current_layer`: the
        current host's own variables (``hostvars.raw_get``)."""
        if host == task_vars.get("inventory_hostname"):
            variables = task_vars
        else:
            variables = host_variables(task_vars, current_layer, task_vars["hostvars"].raw_get(host), defaults)
        return _Resolved(variables, self._templar.copy_with_new_env(available_variables=variables))

    def _host_value(self, context, name):
        if name not in context:
            return _UNSET
        return _plain(context[name])

    def run(self, tmp=None, task_vars=None):
        result, params, task_vars = self.begin(tmp, task_vars)
        del tmp
        hosts = params.get("hosts") or task_vars.get("ansible_play_batch") or []

        problems = []
        options = role_options(params["role"]) if params.get("role") else {}
        defaults = role_defaults(params["role"]) if params.get("role") else {}
        current_layer = task_vars["hostvars"].raw_get(task_vars.get("inventory_hostname"))
        # Group hosts sharing the same value (or the same argument errors) so a
        # group_vars mistake is reported once.
        groups = {}
        invalid = {}
        templates = {}
        for host in hosts:
            context = self._host_context(task_vars, current_layer, host, defaults)
            if options:
                values = dict((name, self._host_value(context, name)) for name in options if name in context)
                errors = argument_problems(options, values)
                if not errors and params["role"] == "drain":
                    errors = _change_window.variable_problems(values)
                if errors:
                    invalid.setdefault("; ".join(errors), []).append(host)
                    continue
                if values.get("dbhygiene_report_html_template"):
                    templates.setdefault(str(values["dbhygiene_report_html_template"]), []).append(host)
            engine = self._host_value(context, "dbhygiene_engine")
            policy = self._host_value(context, "dbhygiene_policy")
            thresholds = self._host_value(context, "dbhygiene_audit_thresholds")
            key = json.dumps(
                [engine is _UNSET or engine, policy is _UNSET or policy, thresholds is _UNSET or thresholds]
            )
            groups.setdefault(key, (engine, policy, thresholds, []))[3].append(host)

        for errors, members in invalid.items():
            where = "hosts " + _names(members) if len(members) > 1 else "host " + members[0]
            problems.append(f"{where}: the {params['role']} role's arguments: {errors}")
        for template, members in templates.items():
            try:
                _report_html.load_template(_files.controller_path(template))
            except _report_html.TemplateError as exc:
                where = "hosts " + _names(members) if len(members) > 1 else "host " + members[0]
                problems.append(f"{where}: {exc}")
        variables_invalid = bool(problems)

        checked = []
        for engine, policy, thresholds, members in groups.values():
            where = "hosts " + _names(members) if len(members) > 1 else "host " + members[0]
            if engine not in _connection.ENGINES:
                shown = "undefined" if engine is _UNSET else repr(engine)
                problems.append(f"{where}: dbhygiene_engine is {shown}; set it to {' or '.join(_connection.ENGINES)}")
                continue
            if policy is _UNSET or policy is None:
                if params["policy_required"]:
                    problems.append(f"{where}: dbhygiene_policy is not set; define the policy in group_vars")
                continue
            try:
                parsed = _policy.parse_policy(policy)
                if thresholds is not _UNSET:
                    _report_model.parse_thresholds(thresholds)
            except _errors.PolicyError as exc:
                field = str(exc.field)
                if not field.startswith("dbhygiene_"):
                    field = "dbhygiene_" + field
                problems.append(f"{where}: {field}: {exc.problem}")
                continue
            unsupported = _engines.check_supported(parsed, engine)
            if unsupported:
                problems.append(f"{where}: dbhygiene_{unsupported}")
                continue
            checked.append({"policy": parsed.name, "engine": engine, "hosts": members, "rules": len(parsed.rules)})

        if problems:
            what = "role variables" if variables_invalid else "session policy"
            raise self.failure(f"invalid {what}, no host was contacted: " + " | ".join(problems), problems=problems)
        result["changed"] = False
        result["policies"] = checked
        result["msg"] = (
            "; ".join(
                f"policy {c['policy']!r} ({c['rules']} rules) valid for {c['engine']} {_names(c['hosts'])}"
                for c in checked
            )
            or "no policy to check"
        )
        return result
