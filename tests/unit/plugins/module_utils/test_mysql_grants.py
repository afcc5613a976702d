# -*- coding: utf-8 -*-
"""SHOW GRANTS read and accounts written (``_mysql/grants.py``), without a server."""

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import grants as my_grants


def test_global_privileges_parsing_never_keeps_the_rest_of_the_line():
    lines = [
        "GRANT PROCESS, CONNECTION ADMIN ON *.* TO `hygiene`@`%` IDENTIFIED BY PASSWORD '*97D6CB2C9084'",
        "GRANT SELECT ON `performance_schema`.`session_connect_attrs` TO `hygiene`@`%`",
        "GRANT SELECT (`Super_priv`, `User`, `Host`) ON `mysql`.`user` TO `hygiene`@`%`",
    ]
    assert my_grants.global_privileges(lines) == {"PROCESS", "CONNECTION ADMIN"}
    assert my_grants.global_privileges(["GRANT ALL PRIVILEGES ON *.* TO `fleet_admin`@`%` WITH GRANT OPTION"]) == {
        "ALL"
    }
    assert my_grants.global_privileges(["GRANT USAGE ON *.* TO `nopriv`@`%`"]) == {"USAGE"}
    assert my_grants.global_privileges(["GRANT `role1` TO `x`@`%`"]) == set()


@pytest.mark.parametrize(
    "current, quoted",
    [
        ("hygiene@%", "'hygiene'@'%'"),
        ("o'brien@10.0.0.%", "'o''brien'@'10.0.0.%'"),
        ("we@ird@localhost", "'we@ird'@'localhost'"),
    ],
)
def test_quote_account(current, quoted):
    assert my_grants.quote_account(current) == quoted


@pytest.mark.parametrize(
    "name, user, host",
    [("app", "app", None), ("app@10.%", "app", "10.%"), ("a@b@localhost", "a@b", "localhost"), ("@x", "@x", None)],
)
def test_a_roles_key_is_a_user_name_or_one_account(name, user, host):
    assert my_grants.split_roles_key(name) == (user, host)


@pytest.mark.parametrize(
    "current, user, host",
    [
        ("app@10.%", "app", "10.%"),
        ("a@b@localhost", "a@b", "localhost"),
        ("@localhost", "", "localhost"),
        ("app", "app", "%"),
        (None, "", "%"),
    ],
)
def test_current_user_text_is_one_account(current, user, host):
    assert my_grants.split_account(current) == (user, host)
