# -*- coding: utf-8 -*-
"""The AWX credential types shipped in extensions/awx: valid as AWX validates a custom type,
and injecting exactly variables the roles read, which the roles then pass on."""

import os

import jsonschema
import pytest
import yaml
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
TYPES = os.path.join(ROOT, "extensions", "awx", "credential_types.yml")
ROLES = ("audit", "enforce", "drain", "timeouts")
# What a job needs from a credential: the login and the TLS files (docs/architecture.md role variables).
EXPECTED = {
    "dbhygiene_login_user",
    "dbhygiene_login_password",
    "dbhygiene_ca_cert",
    "dbhygiene_ssl_cert",
    "dbhygiene_ssl_key",
    "dbhygiene_client_cert",
    "dbhygiene_client_key",
    # One login per engine, for a job that sweeps a mixed fleet.
    "dbhygiene_postgresql_login_user",
    "dbhygiene_postgresql_login_password",
    "dbhygiene_mysql_login_user",
    "dbhygiene_mysql_login_password",
}

# AWX's own schemas for a custom credential type (awx/main/fields.py, CredentialTypeInputField
# and CredentialTypeInjectorField), and the keys its API and awx.awx.credential_type take.
_NAME = "^[a-zA-Z_]+[a-zA-Z0-9_]*$"
INPUTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["string", "boolean"]},
                    "format": {"enum": ["ssh_private_key", "url"]},
                    "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                    "id": {"type": "string", "pattern": _NAME},
                    "label": {"type": "string"},
                    "help_text": {"type": "string"},
                    "multiline": {"type": "boolean"},
                    "secret": {"type": "boolean"},
                    "ask_at_runtime": {"type": "boolean"},
                    "default": {},
                },
                "additionalProperties": False,
                "required": ["id", "label"],
            },
        },
    },
}
INJECTORS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file": {
            "type": "object",
            "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}},
            "additionalProperties": False,
        },
        "env": {"type": "object", "patternProperties": {_NAME: {"type": "string"}}, "additionalProperties": False},
        "extra_vars": {
            "type": "object",
            "patternProperties": {_NAME: {"type": "string"}},
            "additionalProperties": False,
        },
    },
}


class _Filenames(object):
    pass


class _Tower(object):
    def __init__(self, names):
        self.filename = _Filenames()
        for name in names:
            setattr(self.filename, name, "/runner/env/tmp" + name)


def _types():
    with open(TYPES) as handle:
        return yaml.safe_load(handle)["credential_types"]


def _file_names(injectors):
    return [key.split(".", 1)[1] for key in injectors.get("file", {}) if key.startswith("template.")]


def _render(injectors, inputs, strict):
    """Render the injectors as AWX does: at validation (strict, every field set) or at job launch."""
    environment = (
        ImmutableSandboxedEnvironment(undefined=StrictUndefined) if strict else ImmutableSandboxedEnvironment()
    )
    namespace = dict(inputs, tower=_Tower(_file_names(injectors)))
    return {
        kind: {key: environment.from_string(template).render(namespace) for key, template in values.items()}
        for kind, values in injectors.items()
    }


def _role_options(role):
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("definition", _types(), ids=lambda d: d["name"])
def test_the_definition_is_what_awx_accepts(definition):
    assert set(definition) == {"name", "description", "kind", "inputs", "injectors"}
    assert definition["kind"] in ("cloud", "net")  # the kinds a custom type may have
    jsonschema.validate(definition["inputs"], INPUTS_SCHEMA)
    jsonschema.validate(definition["injectors"], INJECTORS_SCHEMA)
    ids = [field["id"] for field in definition["inputs"]["fields"]]
    assert len(ids) == len(set(ids)) and "tower" not in ids
    assert set(definition["inputs"].get("required", [])) <= set(ids)
    files = list(definition["injectors"].get("file", {}))
    assert "template" not in files or len(files) == 1  # AWX: one unnamed file, or only named ones
    # AWX renders every injector with every field set and refuses an undefined name.
    rendered = _render(definition["injectors"], {name: "EXAMPLE" for name in ids}, strict=True)
    for value in rendered.get("extra_vars", {}).values():
        assert value  # with every field set, every variable has a value
    # Every field is injected somewhere: nothing asked of the user is thrown away.
    templates = " ".join(t for values in definition["injectors"].values() for t in values.values())
    for name in ids:
        assert "{{ %s }}" % name in templates or "if %s " % name in templates, name
    # A secret is never put in the job's environment (visible to every process of the job).
    assert not definition["injectors"].get("env")


def test_undefined_names_would_be_refused_as_awx_refuses_them():
    with pytest.raises(UndefinedError):
        _render({"extra_vars": {"dbhygiene_login_user": "{{ usernam }}"}}, {"username": "x"}, strict=True)


def test_every_injected_variable_is_a_variable_of_both_roles():
    injected = set()
    for definition in _types():
        injected |= set(definition["injectors"].get("extra_vars", {}))
    assert injected == EXPECTED
    for role in ROLES:
        options = _role_options(role)
        missing = injected - set(options)
        assert not missing, "%s does not read %s" % (role, sorted(missing))
        for name in injected:
            if name.endswith("_password"):
                assert options[name].get("no_log") is True, (role, name)


def test_the_roles_pass_every_injected_variable_to_the_plugin():
    """Each injected variable is handed to the per-host task under the option of the same name."""
    for role in ROLES:
        with open(os.path.join(ROOT, "roles", role, "tasks", "main.yml")) as handle:
            tasks = handle.read()
        for variable in EXPECTED:
            option = variable[len("dbhygiene_") :]
            for engine in ("postgresql", "mysql"):
                if option.startswith(engine + "_"):
                    option = option[len(engine) + 1 :]
            assert option in _connection.CONNECTION_OPTIONS
            if variable[len("dbhygiene_") :] != option:  # an engine's own login, read first
                per_engine = "'dbhygiene_' ~ dbhygiene_engine ~ '_%s'" % option
                assert per_engine in tasks, (role, variable)
            else:
                assert "%s: " % option in tasks and "dbhygiene_%s | default(omit" % option in tasks, (role, variable)


def test_a_tls_credential_without_client_files_leaves_them_unset():
    tls = [d for d in _types() if "ca_cert" in [f["id"] for f in d["inputs"]["fields"]]][0]
    # At launch AWX leaves an empty field out of the namespace.
    extra_vars = _render(tls["injectors"], {"ca_cert": "-----BEGIN CERTIFICATE-----"}, strict=False)["extra_vars"]
    assert extra_vars["dbhygiene_ca_cert"].startswith("/runner/")
    assert extra_vars["dbhygiene_ssl_cert"] == "" and extra_vars["dbhygiene_client_key"] == ""
    params = {name[len("dbhygiene_") :]: value for name, value in extra_vars.items()}
    for engine in ("postgresql", "mysql"):
        assert _connection.module_args(engine, params) == {"ca_cert": extra_vars["dbhygiene_ca_cert"]}
    full = _render(tls["injectors"], {"ca_cert": "c", "client_cert": "cert", "client_key": "key"}, strict=False)[
        "extra_vars"
    ]
    assert full["dbhygiene_ssl_cert"] == full["dbhygiene_client_cert"] != ""
    assert full["dbhygiene_ssl_key"] == full["dbhygiene_client_key"] != full["dbhygiene_ssl_cert"]
