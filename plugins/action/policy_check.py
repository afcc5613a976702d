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
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _policy
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _connection, _fleet

ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "str"},
    "policy_required": {"type": "bool", "default": True},
    # The role whose meta/argument_specs.yml every host's variables are validated against.
    "role": {"type": "str", "choices": ["enforce", "audit", "drain"]},
}

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")

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


def argument_problems(options, values):
    """Error messages of validating `values` (the variables a host has) against `options`,
    with no_log values masked, as Ansible's role validation would give them."""
    validated = ArgumentSpecValidator(options).validate(dict(values))
    secrets = set(str(values[n]) for n, o in options.items() if o.get("no_log") and values.get(n) not in (None, ""))
    return [remove_values(message, secrets) for message in validated.error_messages]


class _Resolved(object):
    """Variables of one host, templated on access."""

    def __init__(self, variables, templar):
        self._variables = variables
        self._templar = templar

    def __contains__(self, name):
        return name in self._variables

    def __getitem__(self, name):
        return self._templar.template(self._variables[name])


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def _host_context(self, hostvars, host):
        """A mapping of `host`'s variables as this task would see them on that host.

        hostvars alone misses play vars, role params and role vars (which take
        precedence over inventory), so the variables are resolved the way the
        task executor does for each host; should that interface ever change, fall
        back to hostvars rather than fail."""
        try:
            manager = hostvars._variable_manager
            inventory_host = hostvars._inventory.get_host(host)
            variables = manager.get_vars(play=self._task.get_play(), host=inventory_host, task=self._task)
            templar = self._templar.copy_with_new_env(available_variables=variables)
            return _Resolved(variables, templar)
        except Exception:  # pragma: no cover - depends on ansible-core internals
            return hostvars[host]

    def _host_value(self, context, name):
        if name not in context:
            return _UNSET
        return _plain(context[name])

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hosts = params.get("hosts") or task_vars.get("ansible_play_batch") or []
        hostvars = task_vars["hostvars"]

        problems = []
        options = role_options(params["role"]) if params.get("role") else {}
        # Group hosts sharing the same value (or the same argument errors) so a
        # group_vars mistake is reported once.
        groups = {}
        invalid = {}
        for host in hosts:
            context = self._host_context(hostvars, host)
            if options:
                values = dict((name, self._host_value(context, name)) for name in options if name in context)
                errors = argument_problems(options, values)
                if not errors and params["role"] == "drain":
                    errors = _change_window.variable_problems(values)
                if errors:
                    invalid.setdefault("; ".join(errors), []).append(host)
                    continue
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

        checked = []
        for engine, policy, thresholds, members in groups.values():
            where = "hosts " + _names(members) if len(members) > 1 else "host " + members[0]
            if engine not in _fleet.ENGINES:
                shown = "undefined" if engine is _UNSET else repr(engine)
                problems.append(f"{where}: dbhygiene_engine is {shown}; set it to postgresql or mysql")
                continue
            if policy is _UNSET or policy is None:
                if params["policy_required"]:
                    problems.append(f"{where}: dbhygiene_policy is not set; define the policy in group_vars")
                continue
            try:
                parsed = _policy.parse_policy(policy)
                if thresholds is not _UNSET:
                    _fleet.parse_thresholds(thresholds)
            except _policy.PolicyError as exc:
                field = str(exc.field)
                if not field.startswith("dbhygiene_"):
                    field = "dbhygiene_" + field
                problems.append(f"{where}: {field}: {exc.problem}")
                continue
            unsupported = _connection.check_supported(parsed, engine)
            if unsupported:
                problems.append(f"{where}: dbhygiene_{unsupported}")
                continue
            checked.append({"policy": parsed.name, "engine": engine, "hosts": members, "rules": len(parsed.rules)})

        if problems:
            raise AnsibleActionFail(
                "invalid %s, no host was contacted: " % ("role variables" if invalid else "session policy")
                + " | ".join(problems),
                result={"problems": problems},
            )
        result["changed"] = False
        result["policies"] = checked
        result["msg"] = (
            "; ".join(
                "policy {!r} ({} rules) valid for {} {}".format(
                    c["policy"], c["rules"], c["engine"], _names(c["hosts"])
                )
                for c in checked
            )
            or "no policy to check"
        )
        return result
