# -*- coding: utf-8 -*-
"""The fleet is real: every server of the generated inventory answers, as both logins,
with exactly the privileges the fleet promises."""

import psycopg2
import pymysql
import pytest
import yaml
from conftest import run_playbook


def _inventory_hosts(fleet):
    with open(fleet.inventory) as f:
        inv = yaml.safe_load(f)
    groups = inv["all"]["children"]["databases"]["children"]
    hosts = []
    for group in ("postgresql", "mysql"):
        for name, hostvars in (groups[group].get("hosts") or {}).items():
            merged = dict(groups[group]["vars"], **hostvars)
            hosts.append((name, merged))
    return hosts


def test_inventory_lists_every_server_under_databases(fleet):
    names = sorted(name for name, dummy in _inventory_hosts(fleet))
    assert names == sorted(s["name"] for s in fleet.servers)
    assert len(fleet.by_engine("postgresql")) >= 1 and len(fleet.by_engine("mysql")) >= 1


def _pg(hostvars, user, password):
    return psycopg2.connect(
        host=hostvars["ansible_host"],
        port=hostvars["dbhygiene_login_port"],
        user=user,
        password=password,
        dbname="postgres",
        sslmode="disable",
        connect_timeout=5,
    )


def _my(hostvars, user, password):
    return pymysql.connect(
        host=hostvars["ansible_host"],
        port=hostvars["dbhygiene_login_port"],
        user=user,
        password=password,
        ssl_disabled=True,
        connect_timeout=5,
    )


def test_postgresql_logins_and_privileges(fleet):
    for name, hv in _inventory_hosts(fleet):
        if hv["dbhygiene_engine"] != "postgresql":
            continue
        admin = _pg(hv, "fleet_admin", fleet.passwords["fleet_admin"])
        try:
            cur = admin.cursor()
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone()[0] is True, name
        finally:
            admin.close()
        hygiene = _pg(hv, hv["dbhygiene_login_user"], hv["dbhygiene_login_password"])
        try:
            cur = hygiene.cursor()
            cur.execute(
                "SELECT rolsuper, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),"
                " pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') FROM pg_roles WHERE rolname = current_user"
            )
            assert cur.fetchone() == (False, True, True), name
        finally:
            hygiene.close()


def test_mariadb_logins_and_privileges(fleet):
    for name, hv in _inventory_hosts(fleet):
        if hv["dbhygiene_engine"] != "mysql":
            continue
        admin = _my(hv, "fleet_admin", fleet.passwords["fleet_admin"])
        try:
            cur = admin.cursor()
            cur.execute("SHOW GRANTS")
            assert any("ALL PRIVILEGES ON *.*" in g[0] for g in cur.fetchall()), name
        finally:
            admin.close()
        hygiene = _my(hv, hv["dbhygiene_login_user"], hv["dbhygiene_login_password"])
        try:
            cur = hygiene.cursor()
            cur.execute("SHOW GRANTS")
            grants = " ".join(g[0] for g in cur.fetchall())
            assert "PROCESS" in grants and "CONNECTION ADMIN" in grants, (name, grants)
            assert "ALL PRIVILEGES" not in grants, (name, grants)
            assert "SUPER," not in grants and "SUPER ON" not in grants, (name, grants)
        finally:
            hygiene.close()


def test_nopriv_login_has_no_session_rights(fleet):
    pg = fleet.by_engine("postgresql")[0]
    conn = psycopg2.connect(
        host=pg["host"],
        port=pg["port"],
        user="nopriv",
        password=fleet.passwords["nopriv"],
        dbname="postgres",
        sslmode="disable",
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')")
        assert cur.fetchone()[0] is False
    finally:
        conn.close()
    my = fleet.by_engine("mysql")[0]
    conn = pymysql.connect(
        host=my["host"], port=my["port"], user="nopriv", password=fleet.passwords["nopriv"], ssl_disabled=True
    )
    try:
        cur = conn.cursor()
        cur.execute("SHOW GRANTS")
        assert "PROCESS" not in " ".join(g[0] for g in cur.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_tls_with_the_fleet_ca(fleet, engine):
    server = fleet.by_engine(engine)[0]
    if engine == "postgresql":
        conn = psycopg2.connect(
            host=server["host"],
            port=server["port"],
            user="hygiene",
            password=fleet.passwords["hygiene"],
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=fleet.pki["ca_cert"],
        )
        cur = conn.cursor()
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
    else:
        conn = pymysql.connect(
            host=server["host"],
            port=server["port"],
            user="hygiene",
            password=fleet.passwords["hygiene"],
            ssl_ca=fleet.pki["ca_cert"],
            ssl_verify_cert=True,
            ssl_verify_identity=True,
        )
        cur = conn.cursor()
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
    conn.close()


def test_held_sessions_are_visible_in_their_state(fleet):
    from dbfleet import holder

    pg = fleet.by_engine("postgresql")[0]["name"]
    my = fleet.by_engine("mysql")[0]["name"]
    held = [
        holder.open_session(fleet, pg, "idle_in_transaction", application="fleet-test-iit"),
        holder.open_session(fleet, pg, "active", application="fleet-test-active", seconds=60),
        holder.open_session(fleet, my, "active", application="fleet-test-active", seconds=60),
    ]
    try:
        assert held[0].state() == "idle in transaction"
        assert held[1].state() == "active"
        assert held[2].state() == "Query"
    finally:
        for h in held:
            h.close()
    assert not any(h.alive() for h in held)


def test_ansible_reaches_every_inventory_host(fleet):
    run = run_playbook(_PING_PLAYBOOK, inventory=fleet.inventory)
    assert run.rc == 0, run.output
    assert sorted(run.stats) == sorted(s["name"] for s in fleet.servers)


_PING_PLAYBOOK = __file__.replace("test_fleet_servers.py", "playbooks/ping.yml")
