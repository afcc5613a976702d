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

__metaclass__ = type

import json
import sys

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible_collections.dbhygiene.sessions.plugins.module_utils import (
    _argspec,
    _drain,
    _mysql,
    _mysql_drain,
    _postgresql,
    _postgresql_drain,
    _runner,
)


class _Engine(object):
    def __init__(self, driver_module, driver_class, available, library, package):
        self.driver_module = driver_module
        self.driver_class = driver_class
        self.available = available
        self.library = library
        self.package = package


ENGINES = {
    "postgresql": _Engine(
        _postgresql, _postgresql.PostgreSQLDriver, _postgresql.HAS_PSYCOPG2, "psycopg2", "psycopg2-binary"
    ),
    "mysql": _Engine(_mysql, _mysql.MySQLDriver, _mysql.HAS_PYMYSQL, "PyMySQL", "PyMySQL"),
}

# Each engine's rights of a change window, for the `<engine>_drain` modules (kind "drain").
DRAIN_RIGHTS = {"postgresql": _postgresql_drain.PostgreSQLRights, "mysql": _mysql_drain.MySQLRights}


class _Exit(Exception):
    """exit_json / fail_json of the stand-in: the result, and the end of the run."""

    def __init__(self, result):
        Exception.__init__(self, "module exit")
        self.result = result


class _InProcessModule(object):
    """The part of AnsibleModule that the runner's run_*_module functions use."""

    def __init__(self, params, check_mode, diff):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff

    def exit_json(self, **result):
        raise _Exit(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg)
        raise _Exit(result)


def missing_driver(engine):
    """The failure of a host whose driver the controller's Python cannot import, or None."""
    spec = ENGINES[engine]
    if spec.available:
        return None
    return {
        "failed": True,
        "msg": (
            "dbhygiene_run_on is controller, but the Python library %s (the %s driver) cannot be imported by the "
            "controller's Python %s, which runs ansible-playbook; install it there with: %s -m pip install %s "
            "(or set dbhygiene_run_on: host to run the module on the database host)"
            % (spec.library, engine, sys.executable, sys.executable, spec.package)
        ),
    }


def _argument_spec(engine, kind):
    spec = ENGINES[engine].driver_module.connection_argument_spec()
    if kind == "drain":
        spec.update(_drain.drain_argument_spec())
    else:
        spec.update(_argspec.sessions_argument_spec() if kind == "sessions" else _argspec.info_argument_spec())
    return spec


def _no_log_values(spec, params):
    values = set()
    for name, option in spec.items():
        value = params.get(name)
        if option.get("no_log") and value not in (None, ""):
            values.add(str(value))
    return values


def run(engine, kind, module_args, check_mode=False, diff=False):
    """The result the `<engine>_<kind>` module would return for `module_args` (kind:
    "sessions", "session_info" or "drain"), computed in this process."""
    missing = missing_driver(engine)
    if missing:
        return missing
    spec = _argument_spec(engine, kind)
    # As the module would receive them: plain JSON types (no templating tags; a driver
    # may insist on type(port) is int).
    plain_args = json.loads(json.dumps(module_args, default=str))
    validated = ArgumentSpecValidator(spec).validate(plain_args)
    params = validated.validated_parameters
    if validated.error_messages:
        result = {"failed": True, "msg": "; ".join(validated.error_messages)}
    else:
        module = _InProcessModule(params, bool(check_mode), bool(diff))
        engine_spec = ENGINES[engine]
        try:
            if kind == "sessions":
                _runner.run_sessions_module(module, engine_spec.driver_class, engine_spec.driver_module.open_driver)
            elif kind == "drain":
                _drain.run_drain_module(
                    module, engine_spec.driver_class, engine_spec.driver_module.open_driver, DRAIN_RIGHTS[engine]
                )
            else:
                _runner.run_info_module(module, engine_spec.driver_module.open_driver, engine_spec.driver_class)
        except _Exit as done:
            result = done.result
        except Exception as exc:  # a bug: fail this host alone, as a crashed module would
            result = {"failed": True, "msg": "the %s %s run failed: %s: %s" % (engine, kind, type(exc).__name__, exc)}
        else:  # pragma: no cover - the run_* functions always exit
            result = {"failed": True, "msg": "the %s %s run ended without a result" % (engine, kind)}
    # As the module's JSON would come back: plain JSON types, no_log values masked.
    result = remove_values(result, _no_log_values(spec, params))
    return json.loads(json.dumps(result, default=str))
