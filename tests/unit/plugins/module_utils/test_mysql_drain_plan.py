# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL / MariaDB drain's planning (``_mysql/drain_plan.py``): which accounts are locked and
which are unlocked, the record's entries, the messages. No database here:
tests/integration/test_mysql_drain.py runs them on MariaDB."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from _mysql_samples import PUBLIC_LINES
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import drain_plan as my_drain_plan


def acct(superuser=False, locked=False, lock_key=None, global_data=False):
    return {"superuser": superuser, "locked": locked, "lock_key": lock_key, "global": global_data}


ACCOUNTS = {
    ("app", "%"): acct(),
    ("app", "localhost"): acct(lock_key="0"),
    ("rep", "%"): acct(),
    ("wide", "%"): acct(global_data=True),
    ("root", "localhost"): acct(superuser=True, global_data=True),
    ("mig", "%"): acct(),
    ("old", "%"): acct(locked=True, lock_key="1"),
    ("viarole", "%"): acct(),
    ("sess", "%"): acct(),
    ("me", "%"): acct(global_data=True),
    ("bystander", "%"): acct(),
}
HOLDERS = {
    "billing": [
        ("app", "%", "schema"),
        ("app", "localhost", "schema"),
        ("rep", "%", "table"),
        ("mig", "%", "schema"),
        ("old", "%", "schema"),
        ("reporting_role", "", "schema"),
    ],
    "other": [("app", "%", "schema")],
}
EDGES = [("viarole", "%", "reporting_role", "")]
SESSIONS = {"billing": {"sess"}}


def plan(databases=("billing",), recorded=None, allowed=("mig",)):
    return my_drain_plan.plan_locks(
        list(databases), ACCOUNTS, HOLDERS, EDGES, SESSIONS, set(allowed), ("me", "%"), recorded or {}
    )


def test_who_is_locked_and_why():
    lock, extend, already = plan()
    by_name = dict((my_drain_plan.account_name(a["user"], a["host"]), a) for a in lock)
    assert sorted(by_name) == sorted(
        ["'app'@'%'", "'app'@'localhost'", "'rep'@'%'", "'wide'@'%'", "'viarole'@'%'", "'sess'@'%'"]
    )
    assert by_name["'app'@'%'"]["reasons"] == ["holds privileges on billing (schema)"]
    assert by_name["'rep'@'%'"]["reasons"] == ["holds privileges on billing (table)"]
    assert "global privileges" in by_name["'wide'@'%'"]["reasons"][0]
    assert "through role reporting_role" in by_name["'viarole'@'%'"]["reasons"][0]
    assert by_name["'sess'@'%'"]["reasons"] == ["has a session on billing"]
    assert by_name["'app'@'localhost'"]["lock_key"] == "0"
    assert already == ["'old'@'%'"] and extend == []
    # never: a superuser, an allowed login, ourselves, an account without privileges there
    assert not set(by_name) & {"'root'@'localhost'", "'mig'@'%'", "'me'@'%'", "'bystander'@'%'"}


def test_two_databases_one_lock_each_account():
    lock, _extend, _already = plan(databases=("billing", "other"))
    [app] = [a for a in lock if (a["user"], a["host"]) == ("app", "%")]
    assert app["databases"] == ["billing", "other"] and len(app["reasons"]) == 2


def test_an_account_locked_by_a_drain_already_is_extended_not_relocked():
    accounts = dict(ACCOUNTS)
    accounts[("app", "%")] = acct(locked=True, lock_key="1")
    lock, extend, already = my_drain_plan.plan_locks(
        ["other"], accounts, HOLDERS, EDGES, {}, set(), ("me", "%"), {("app", "%"): {"billing"}}
    )
    assert extend == [("other", "app", "%", "holds privileges on other (schema)")]
    assert "'app'@'%'" not in already and not [a for a in lock if a["user"] == "app" and a["host"] == "%"]


def test_plan_unlocks():
    record = [
        ("billing", "app", "%", "locked", None, "r1"),
        ("billing", "rep", "%", "pending", None, "r2"),  # died before its lock: unlocked, nothing to do
        ("billing", "wide", "%", "pending", "0", "r3"),  # died after its lock, before the mark
        ("billing", "shared", "%", "locked", None, "r4"),
        ("other", "shared", "%", "locked", None, "r4"),  # still needed by other
        ("billing", "freed", "%", "locked", None, "r5"),  # someone unlocked it during the window
    ]
    accounts = {
        ("app", "%"): acct(locked=True),
        ("rep", "%"): acct(),
        ("wide", "%"): acct(locked=True),
        ("shared", "%"): acct(locked=True),
        ("freed", "%"): acct(),
    }
    unlock, kept, gone = my_drain_plan.plan_unlocks(["billing"], record, accounts)
    assert [(a["user"], a["lock_key"]) for a in unlock] == [("app", None), ("wide", "0")]
    assert kept == ["'shared'@'%'"] and gone == ["'freed'@'%'"]


def test_account_rows_and_name():
    rows = [(b"app", b"%", 0, None, 1), ("old", "%", 0, "1", 0), ("m8", "%", 0, "true", 0), ("x", "%", 1, "0", 0)]
    accounts = my_drain_plan.account_rows(rows)
    assert accounts[("app", "%")] == acct(global_data=True)
    assert accounts[("old", "%")]["locked"] and accounts[("m8", "%")]["locked"]
    assert not accounts[("x", "%")]["locked"] and accounts[("x", "%")]["superuser"]
    assert my_drain_plan.account_name("o'k", "%") == "'o''k'@'%'"


def test_record_entries():
    import datetime

    at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    entries = my_drain_plan.record_entries(
        [("billing", at, "admin@%")],
        [("billing", "app", "%", "locked", None, "r"), ("billing", "rep", "%", "pending", None, "r")],
    )
    [entry] = entries
    assert entry["complete"] is False and [c["status"] for c in entry["changes"]] == ["locked", "pending"]
    assert entry["changes"][0]["account"] == "'app'@'%'" and entry["changes"][0]["right"] == "ACCOUNT LOCK"


def test_every_account_of_a_locked_user_name_is_locked():
    accounts = dict(ACCOUNTS)
    accounts[("rep", "10.%")] = acct()  # no privileges of its own on billing
    lock, _extend, _already = my_drain_plan.plan_locks(
        ["billing"], accounts, HOLDERS, EDGES, SESSIONS, {"mig"}, ("me", "%"), {}
    )
    [shared] = [a for a in lock if (a["user"], a["host"]) == ("rep", "10.%")]
    assert shared["reasons"] == ["shares the user name rep with 'rep'@'%', which holds privileges on billing (table)"]


def test_open_gives_back_only_what_no_other_drain_needs_and_is_missing():
    rows = [
        ("billing", PUBLIC_LINES[0], "revoked"),
        ("billing", PUBLIC_LINES[1], "revoked"),
        ("bill_x", PUBLIC_LINES[1], "revoked"),  # the pattern grant: bill_x is still drained
        ("billing", PUBLIC_LINES[3], "pending"),  # its REVOKE never ran: still there
    ]
    now = [PUBLIC_LINES[3], PUBLIC_LINES[4]]
    assert my_drain_plan.plan_public_restore(["billing"], rows, now) == [("billing", PUBLIC_LINES[0])]
    assert my_drain_plan.plan_public_restore(["billing", "bill_x"], rows, now) == [
        ("billing", PUBLIC_LINES[0]),
        ("billing", PUBLIC_LINES[1]),
    ]
    entry = my_drain_plan.public_entry("billing", PUBLIC_LINES[2], "revoked")
    assert entry["account"] == "PUBLIC" and entry["right"] == "SELECT (`c ON x`), DELETE ON `billing`.`t`"
    assert entry["with_grant_option"] is True and entry["change"] == "revoked"


def test_a_database_the_login_cannot_see_names_the_server_what_it_sees_and_the_grant():
    visible = ["information_schema", "appdb", "mysql", "shop"]
    message = my_drain_plan.missing_databases_message(
        ["billing"], visible, "db1:3306", "mariadb", "hygiene@%", sees_all=False
    )
    assert message.startswith("databases: 'billing' not visible to the login 'hygiene'@'%' on MariaDB at db1:3306")
    assert "(it sees: 'appdb', 'shop')" in message  # not the system databases
    assert "GRANT SHOW DATABASES ON *.* TO 'hygiene'@'%'" in message and "nothing was changed" in message


def test_a_database_missing_for_a_login_that_sees_all_asks_to_check_the_name():
    names = ["db%02d" % n for n in range(25)]
    message = my_drain_plan.missing_databases_message(
        ["appdb", "x"], names, "db1:3306", "mysql", "root@localhost", sees_all=True
    )
    assert message.startswith("databases: 'appdb', 'x' not found on MySQL at db1:3306 (it has: 'db00',")
    assert "and 5 more); check the names (dbhygiene_drain_databases)" in message and "GRANT" not in message
