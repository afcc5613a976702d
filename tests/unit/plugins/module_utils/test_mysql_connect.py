# -*- coding: utf-8 -*-
"""The connection options of the MySQL/MariaDB modules (``_mysql/connect.py``): the option file,
TLS, bad input and messages, without a server.
"""

import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import SessionError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import connect as my_connect
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver


# ------------------------------------------------------------ connection options
def _params(**options):
    params = dict(
        login_host=None,
        login_port=None,
        login_user=None,
        login_password=None,
        login_unix_socket=None,
        config_file=None,
        connect_timeout=30,
        ca_cert=None,
        client_cert=None,
        client_key=None,
        check_hostname=None,
    )
    params.update(options)
    return params


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_tls_off_unless_asked(home):
    kwargs = my_connect.connect_kwargs(_params(login_host="db1", login_user="u", login_password="pw"))
    assert kwargs["ssl_disabled"] is True
    assert kwargs["port"] == 3306 and kwargs["host"] == "db1" and kwargs["password"] == b"pw"
    assert kwargs["program_name"] == "dbhygiene.sessions" and kwargs["autocommit"] is True
    assert "ssl_ca" not in kwargs


def test_tls_with_ca(home):
    ca = home / "ca.crt"
    ca.write_text("x")
    kwargs = my_connect.connect_kwargs(_params(ca_cert=str(ca)))
    assert kwargs["ssl_ca"] == str(ca) and kwargs["ssl_verify_cert"] and kwargs["ssl_verify_identity"]
    assert "ssl_disabled" not in kwargs
    kwargs = my_connect.connect_kwargs(_params(ca_cert=str(ca), check_hostname=False))
    assert kwargs["ssl_verify_cert"] and not kwargs["ssl_verify_identity"]


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(login_port=70000), "login_port"),
        (dict(login_port=0), "login_port"),
        (dict(connect_timeout=0), "connect_timeout"),
        (dict(ca_cert="/nonexistent/ca.crt"), "ca_cert"),
        (dict(check_hostname=True), "check_hostname"),
        (dict(config_file="/nonexistent/my.cnf"), "config_file"),
    ],
)
def test_bad_connection_options(home, options, field):
    with pytest.raises(SessionError) as caught:
        my_connect.connect_kwargs(_params(**options))
    assert str(caught.value).startswith(field + ":")
    assert repr(list(options.values())[0]) in str(caught.value)


def test_client_key_needs_client_cert(home):
    key = home / "k.pem"
    key.write_text("x")
    with pytest.raises(SessionError, match="^client_key:"):
        my_connect.connect_kwargs(_params(client_key=str(key)))


def test_option_file_defaults_and_precedence(home):
    (home / ".my.cnf").write_text(
        '[client]\nuser = fileuser\npassword = "p\'w;%s"\nhost = filehost\nport = 3307\n[mysql]\nuser = other\n'
    )
    kwargs = my_connect.connect_kwargs(_params())
    assert (kwargs["user"], kwargs["password"], kwargs["host"], kwargs["port"]) == (
        "fileuser",
        b"p'w;%s",
        "filehost",
        3307,
    )
    kwargs = my_connect.connect_kwargs(_params(login_user="opt", login_port=3308))
    assert (kwargs["user"], kwargs["port"], kwargs["host"]) == ("opt", 3308, "filehost")
    other = home / "other.cnf"
    other.write_text("[client]\nsocket=/run/mysqld.sock\n")
    kwargs = my_connect.connect_kwargs(_params(config_file=str(other)))
    assert kwargs["unix_socket"] == "/run/mysqld.sock" and "user" not in kwargs


def test_no_option_file_is_fine(home):
    assert not os.path.exists(str(home / ".my.cnf"))
    assert "user" not in my_connect.connect_kwargs(_params())


# ------------------------------------------------------------ options: timeouts, passwords, hostile input
def test_timeouts_bound_the_handshake_and_every_query(home):
    kwargs = my_connect.connect_kwargs(_params(connect_timeout=3))
    assert kwargs["connect_timeout"] == 3 and kwargs["read_timeout"] == 3 and kwargs["write_timeout"] == 3
    assert my_connect.query_timeout_of(_params()) == 30
    assert my_connect.query_timeout_of(_params(query_timeout=5)) == 5
    assert "query_timeout" in my_driver.connection_argument_spec()


@pytest.mark.parametrize("password", ["pass\u20acword", "p\u00e4ssw\u00f6rd"])
def test_passwords_go_as_utf8(home, password):
    assert my_connect.connect_kwargs(_params(login_password=password))["password"] == password.encode("utf-8")


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(login_host="db\x001"), "login_host"),
        (dict(login_user="u\x00"), "login_user"),
        (dict(login_unix_socket="/s\udcff"), "login_unix_socket"),
        (dict(ca_cert="/x\x00"), "ca_cert"),
        (dict(config_file="/x\x00.cnf"), "config_file"),
        (dict(login_port="x"), "login_port"),
        (dict(login_port=True), "login_port"),
        (dict(login_port=3306.5), "login_port"),
        (dict(connect_timeout=-1), "connect_timeout"),
        (dict(connect_timeout=10**9), "connect_timeout"),
        (dict(query_timeout=0), "query_timeout"),
        (dict(query_timeout="soon"), "query_timeout"),
    ],
)
def test_hostile_options_name_the_field(home, options, field):
    with pytest.raises(SessionError) as caught:
        my_connect.connect_kwargs(_params(**options))
        my_connect.query_timeout_of(_params(**options))
    assert str(caught.value).startswith(field + ":")


@pytest.mark.parametrize("password", ["pw\x00secret", "secret\udcff"])
def test_a_bad_password_is_never_shown(home, password):
    with pytest.raises(SessionError) as caught:
        my_connect.connect_kwargs(_params(login_password=password))
    message = str(caught.value)
    assert message.startswith("login_password:") and "secret" not in message and "not shown" in message


def test_long_values_are_cut_in_messages(home):
    with pytest.raises(SessionError) as caught:
        my_connect.connect_kwargs(_params(ca_cert="/x" * 50000))
    message = str(caught.value)
    assert len(message) < 300 and "100000 characters" in message


def test_codec_errors_never_quote_the_value():
    exc = UnicodeEncodeError("latin-1", "pass\u20acword", 4, 5, "ordinal not in range(256)")
    message = my_connect.describe_failure(exc, {"password": "pass\u20acword".encode("utf-8")})
    assert "\u20ac" not in message and "pass" not in message and "UnicodeEncodeError" in message


def test_an_empty_config_file_reads_no_option_file(home):
    (home / ".my.cnf").write_text("[client]\nuser = fileuser\nport = 3307\n")
    assert my_connect.connect_kwargs(_params())["user"] == "fileuser"
    kwargs = my_connect.connect_kwargs(_params(config_file=""))
    assert "user" not in kwargs and kwargs["port"] == 3306


def test_an_option_file_with_a_nul_names_the_file_not_the_value(home):
    (home / ".my.cnf").write_text("[client]\npassword = se\x00cret\n")
    with pytest.raises(SessionError) as caught:
        my_connect.connect_kwargs(_params())
    assert str(caught.value).startswith("config_file:") and "cret" not in str(caught.value)


def test_lock_waits_arrive_whole_in_group_concat(home):
    # MySQL's group_concat_max_len is 1 KB by default: an ALTER behind 200 readers would be cut
    init = my_connect.connect_kwargs({"login_host": "db"})["init_command"]
    assert "time_zone = '+00:00'" in init and "group_concat_max_len = 4194304" in init
