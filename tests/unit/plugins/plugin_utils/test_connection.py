# -*- coding: utf-8 -*-
"""The roles' connection options as passed to each engine's module."""

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _connection


def test_each_engine_gets_only_its_options_and_empty_values_are_dropped():
    params = {
        "login_host": "db1",
        "login_user": "hygiene",
        "ssl_cert": "",  # what an AWX TLS credential injects for an empty field
        "client_key": "",
        "ca_cert": "/run/ca.pem",
        "config_file": "/etc/my.cnf",
        "query_timeout": 20,
        "login_db": "postgres",
    }
    assert _connection.module_args("postgresql", params) == {
        "login_host": "db1",
        "login_user": "hygiene",
        "ca_cert": "/run/ca.pem",
        "query_timeout": 20,
        "login_db": "postgres",
    }
    assert _connection.module_args("mysql", params) == {
        "login_host": "db1",
        "login_user": "hygiene",
        "ca_cert": "/run/ca.pem",
        "config_file": "/etc/my.cnf",
        "query_timeout": 20,
    }


def test_an_empty_config_file_is_passed_on_it_turns_the_option_file_off():
    assert _connection.module_args("mysql", {"config_file": ""}) == {"config_file": ""}
    assert _connection.module_args("mysql", {"config_file": None}) == {}
    assert "config_file" not in _connection.module_args("postgresql", {"config_file": ""})
