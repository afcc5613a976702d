# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL connection options (module_utils/_postgresql/connect.py): their check, TLS,
libpq's keyword arguments and environment, messages, and the login's preflight.

No database here: connecting for real is tested in tests/integration/test_postgresql_driver.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import connect as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import driver


def params(**overrides):
    base = {
        "login_host": "db1.example.com",
        "login_port": 5432,
        "login_user": "hygiene",
        "login_password": "s3cret-pw",
        "login_unix_socket": None,
        "login_db": None,
        "connect_timeout": 10,
        "query_timeout": 30,
        "ssl_mode": None,
        "ca_cert": None,
        "ssl_cert": None,
        "ssl_key": None,
    }
    base.update(overrides)
    return base


# ---------------------------------------------------------------- options
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {},
            {
                "host": "db1.example.com",
                "port": 5432,
                "user": "hygiene",
                "password": "s3cret-pw",
                "dbname": "postgres",
                "connect_timeout": 10,
                "sslmode": "prefer",
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            },
        ),
        (
            {"login_unix_socket": "/run/postgresql", "login_db": "appdb"},
            {"host": "/run/postgresql", "dbname": "appdb"},
        ),
        ({"login_unix_socket": "/run/postgresql/.s.PGSQL.5433"}, {"host": "/run/postgresql"}),
        (
            {"ssl_mode": "verify-full", "ca_cert": "/ca.crt", "ssl_cert": "/c.crt", "ssl_key": "/c.key"},
            {"sslmode": "verify-full", "sslrootcert": "/ca.crt", "sslcert": "/c.crt", "sslkey": "/c.key"},
        ),
    ],
    ids=["tcp", "socket-wins", "socket-file", "tls"],
)
def test_connect_kwargs(overrides, expected):
    kwargs = pg.connect_kwargs(params(**overrides), "dbhygiene.sessions-abc")
    assert kwargs["application_name"] == "dbhygiene.sessions-abc"
    for key, value in expected.items():
        assert kwargs[key] == value, key


def test_connect_kwargs_leaves_unset_options_to_libpq():
    kwargs = pg.connect_kwargs(
        params(login_host=None, login_password=None, login_user=None, login_port=None, ssl_mode=None), "app"
    )
    assert set(kwargs) == {"dbname", "application_name", "connect_timeout", "sslmode"} | set(pg.KEEPALIVES)
    assert kwargs["sslmode"] == "prefer"  # no TLS option at all: libpq's default, as before


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, "prefer"),
        ({"ca_cert": "/ca.crt"}, "verify-full"),
        ({"ssl_cert": "/c.crt", "ssl_key": "/c.key"}, "verify-full"),
        ({"ca_cert": "/ca.crt", "ssl_mode": "verify-ca"}, "verify-ca"),
        ({"ca_cert": "/ca.crt", "ssl_mode": "require"}, "require"),
        ({"ssl_mode": "disable"}, "disable"),
        ({"ssl_mode": "allow"}, "allow"),
        ({"ssl_mode": ""}, "prefer"),
    ],
)
def test_effective_ssl_mode(overrides, expected):
    assert pg.effective_ssl_mode(params(**overrides)) == expected
    assert pg.connect_kwargs(params(**overrides), "app")["sslmode"] == expected


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
@pytest.mark.parametrize("certificate", ["ca_cert", "ssl_cert"])
def test_a_mode_that_may_go_plain_text_is_refused_with_a_certificate(mode, certificate):
    with pytest.raises(pg.SessionError) as info:
        pg.connect_kwargs(params(ssl_mode=mode, **{certificate: "/x.crt"}), "app")
    message = str(info.value)
    assert "ssl_mode %s together with %s" % (mode, certificate) in message
    assert "verify-full" in message
    with pytest.raises(pg.SessionError, match="ssl_mode %s" % mode):
        pg.validate_connection_params(params(ssl_mode=mode, **{certificate: "/x.crt"}))


def test_connect_timeout_defaults_when_unset():
    assert pg.connect_kwargs(params(connect_timeout=None), "app")["connect_timeout"] == pg.DEFAULT_CONNECT_TIMEOUT
    assert pg.timeouts(params(connect_timeout=None, query_timeout=None)) == (10, 30)
    assert pg.timeouts({"connect_timeout": "7", "query_timeout": "5"}) == (7, 5)  # the controller passes raw values


# ---------------------------------------------------------------- hostile input
@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("login_host", "db1\x00.example.com", "login_host must not contain the control character '\\x00'"),
        ("login_host", "db1\n.example.com", "login_host must not contain the control character '\\n'"),
        ("login_user", "hy\x00giene", "login_user must not contain"),
        ("login_db", "app\x1bdb", "login_db must not contain"),
        ("login_unix_socket", "/run/\x00pg", "login_unix_socket must not contain"),
        ("ca_cert", "/ca\x00.crt", "ca_cert must not contain"),
        ("ssl_cert", "/c\x7f.crt", "ssl_cert must not contain"),
        ("ssl_key", "/k\x00.key", "ssl_key must not contain"),
        ("ssl_mode", "verify-full\x00", "ssl_mode must not contain"),
        ("ssl_mode", "sloppy", "ssl_mode must be one of disable, allow, prefer, require, verify-ca, verify-full"),
        ("login_user", 12, "login_user must be a string, not 12"),
        ("login_port", 0, "login_port must be between 1 and 65535, not 0"),
        ("login_port", 65536, "login_port must be between 1 and 65535, not 65536"),
        ("login_port", -5432, "login_port must be between 1 and 65535, not -5432"),
        ("login_port", "many", "login_port must be an integer, not 'many'"),
        ("connect_timeout", 0, "connect_timeout must be between 1 and 3600 seconds, not 0"),
        ("connect_timeout", -1, "connect_timeout must be between 1 and 3600 seconds, not -1"),
        ("connect_timeout", 10**12, "connect_timeout must be between 1 and 3600 seconds, not 1000000000000"),
        ("query_timeout", 0, "query_timeout must be between 1 and 3600 seconds, not 0"),
        ("query_timeout", 99999999999, "query_timeout must be between 1 and 3600 seconds"),
        ("query_timeout", "nan", "query_timeout must be an integer, not 'nan'"),
    ],
)
def test_hostile_connection_options_fail_naming_the_field(field, value, needle):
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(**{field: value}))
    assert needle in str(info.value)
    assert "s3cret-pw" not in str(info.value)


def test_open_driver_checks_the_options_before_anything_else():
    with pytest.raises(pg.SessionError, match="login_host must not contain"):
        driver.open_driver(params(login_host="a\x00b"))


def test_a_nul_in_the_password_is_refused_without_showing_it():
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(login_password="s3cret\x00pw"))
    assert "login_password" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_long_values_are_cut_in_messages():
    with pytest.raises(pg.SessionError) as info:
        pg.validate_connection_params(params(login_host="h" * 100000 + "\x00"))
    message = str(info.value)
    assert len(message) < 400
    assert "(100001 characters)" in message
    assert pg.shown("x" * 10) == "'xxxxxxxxxx'"


def test_long_hosts_are_cut_in_the_target():
    described = pg.describe_target(params(login_host="h" * 5000))
    assert described == "h" * 200 + "... (5000 characters):5432"


def test_good_options_pass():
    pg.validate_connection_params(params())
    pg.validate_connection_params(params(ssl_mode="verify-full", ca_cert="/ca.crt", login_port=1, connect_timeout=3600))


def test_application_name_is_ours_and_unique():
    names = {pg.new_application_name() for dummy in range(20)}
    assert len(names) == 20
    assert all(name.startswith(pg.APPLICATION_PREFIX + "-") for name in names)


def test_argument_spec_hides_the_password_and_uses_libpq_environment():
    spec = pg.connection_argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert spec["ssl_key"]["no_log"] is False  # a path, not a secret
    fallbacks = {name: option["fallback"][1] for name, option in spec.items() if "fallback" in option}
    assert fallbacks["login_host"] == ["PGHOST"]
    assert fallbacks["login_password"] == ["PGPASSWORD"]
    assert fallbacks["ssl_mode"] == ["PGSSLMODE"]
    assert spec["ssl_mode"]["choices"] == ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
    assert "default" not in spec["ssl_mode"]  # unset: decided by effective_ssl_mode()
    assert spec["query_timeout"] == {"type": "int", "default": 30}


def test_argument_spec_has_no_alias_community_postgresql_removed():
    spec = pg.connection_argument_spec()
    aliases = {alias for option in spec.values() for alias in option.get("aliases", [])}
    assert not aliases & {"login", "host", "port", "unix_socket", "db", "database"}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, "db1.example.com:5432"),
        ({"login_unix_socket": "/run/pg", "login_port": 5433}, "/run/pg (unix socket, port 5433)"),
        ({"login_host": None}, "the default PostgreSQL server (libpq defaults, port 5432)"),
    ],
)
def test_describe_target_never_shows_the_password(overrides, expected):
    described = pg.describe_target(params(**overrides))
    assert described == expected
    assert "s3cret-pw" not in described


def test_scrub_removes_the_password():
    assert pg.scrub("FATAL: bad password s3cret-pw\n\tfor x\n", params()) == "FATAL: bad password ******** for x"
    assert pg.scrub("nothing secret", params(login_password=None)) == "nothing secret"


@pytest.mark.parametrize(
    "message, hint_word",
    [
        ("SSL error: certificate verify failed", "ca_cert"),
        ('server certificate for "x" does not match host name "y"', "verify-full"),
        ('FATAL:  password authentication failed for user "hygiene"', "login_password"),
        ("connection refused\n\tIs the server running", "login_port"),
        ('no pg_hba.conf entry for host "127.0.0.1", user "x", database "y", SSL off', "pg_hba.conf"),
        ("something else entirely", None),
    ],
)
def test_connect_hints(message, hint_word):
    hint = pg.connect_hint(message)
    if hint_word is None:
        assert hint is None
    else:
        assert hint_word in hint


# ---------------------------------------------------------------- preflight messages
def rights(**overrides):
    base = {
        "login": "hygiene",
        "superuser": False,
        "read_all_stats": True,
        "signal_backend": True,
        "version_num": 150006,
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides, signal, needles, absent",
    [
        ({}, True, None, ()),
        ({"read_all_stats": False, "signal_backend": False, "superuser": True}, True, None, ()),
        ({"signal_backend": False}, False, None, ()),
        (
            {"read_all_stats": False},
            False,
            [
                "login hygiene on PostgreSQL at db1:5432",
                "lacks pg_read_all_stats",
                'GRANT pg_read_all_stats TO "hygiene"',
            ],
            ["pg_signal_backend"],
        ),
        (
            {"signal_backend": False},
            True,
            ["cannot cancel or terminate", 'GRANT pg_signal_backend TO "hygiene"'],
            ["pg_read_all_stats"],
        ),
        (
            {"read_all_stats": False, "signal_backend": False, "login": 'we"ird'},
            True,
            [
                "lacks pg_read_all_stats and pg_signal_backend",
                'GRANT pg_read_all_stats TO "we""ird"; GRANT pg_signal_backend TO "we""ird"',
            ],
            [],
        ),
        ({"version_num": 90624}, True, ["needs PostgreSQL 10 or later"], []),
    ],
    ids=["ok", "superuser", "info-needs-no-signal", "no-stats", "no-signal", "neither", "too-old"],
)
def test_preflight_error(overrides, signal, needles, absent):
    message = pg.preflight_error(rights(**overrides), signal, "db1:5432")
    if needles is None:
        assert message is None
        return
    for needle in needles:
        assert needle in message
    for word in absent:
        assert word not in message


def test_the_env_fallback_works_in_the_module_path(monkeypatch):
    monkeypatch.setenv("PGHOST", "db-from-env")
    monkeypatch.setenv("PGPORT", "6543")
    params = ArgumentSpecValidator(pg.connection_argument_spec()).validate({}).validated_parameters
    assert params["login_host"] == "db-from-env" and params["login_port"] == 6543
