# -*- coding: utf-8 -*-
"""Helpers of the role / playbook tests: a generated inventory with group_vars,
sessions held under a tag of the test's own, and the servers' real state read
through the admin login.

Every policy a test writes is scoped to application names starting with the
test's tag: the servers are shared with other tests running meanwhile.
"""

import json
import os
import uuid

import yaml
from dbfleet import holder, mariadb, postgres

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENFORCE = os.path.join(ROOT, "playbooks", "enforce.yml")
AUDIT = os.path.join(ROOT, "playbooks", "audit.yml")
# A host that is down: nothing listens there. Outside every fleet's addresses (127.0.1.N and
# 127.0.2.N for the servers, 127.0.3.N and 127.0.4.N for replicas, N from $DBFLEET_FIRST), so no
# fleet, whatever its first address, ever answers there; the fleet is shared and never stopped.
DOWN_ADDRESS = "127.0.9.250"
DOWN_HOST = {"ansible_host": DOWN_ADDRESS, "dbhygiene_login_port": 5432, "dbhygiene_connect_timeout": 3}
SERVERS = ("pg1", "pg2", "pg3", "mariadb1", "mariadb2", "mariadb3")


def new_tag(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def write_inventory(fleet, directory, group_vars, hosts=SERVERS, down_host=False):
    """An inventory of fleet `hosts` (+ a down host `pgdown`) with group_vars/databases.yml; returns its path."""
    with open(fleet.inventory) as handle:
        inventory = yaml.safe_load(handle)
    groups = inventory["all"]["children"]["databases"]["children"]
    for group in groups.values():
        group["hosts"] = {name: hv for name, hv in group["hosts"].items() if name in hosts}
    if down_host:
        groups["postgresql"]["hosts"]["pgdown"] = dict(DOWN_HOST)
    directory = str(directory)
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    path = os.path.join(directory, "inventory.yml")
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)
    with open(os.path.join(directory, "group_vars", "databases.yml"), "w") as handle:
        yaml.safe_dump(group_vars, handle, default_flow_style=False)
    return path


def open_sessions(fleet, plan):
    """plan: [(server, kind, application)] -> list of HeldSession (closed by close_all)."""
    held = []
    try:
        for server, kind, application in plan:
            held.append(holder.open_session(fleet, server, kind, application=application, seconds=600))
    except Exception:
        close_all(held)
        raise
    return held


def close_all(held):
    for session in held:
        try:
            session.close()
        except Exception:  # a session the test ended is already gone
            pass


def live_sessions(fleet, server_name, application_prefix):
    """{id: state} of the server's sessions whose application starts with the prefix (admin login)."""
    server = fleet.server(server_name)
    if server["engine"] == "postgresql":
        conn = postgres.admin_connect(server)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE application_name LIKE %s", (application_prefix + "%",)
            )
            return dict(cur.fetchall())
        finally:
            conn.close()
    conn = mariadb.admin_connect(server)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT p.ID, p.COMMAND FROM information_schema.PROCESSLIST p "
            "JOIN performance_schema.session_connect_attrs a ON a.PROCESSLIST_ID = p.ID "
            "WHERE a.ATTR_NAME = 'program_name' AND a.ATTR_VALUE LIKE %s",
            (application_prefix + "%",),
        )
        return dict(cur.fetchall())
    finally:
        conn.close()


def is_idle(engine, state):
    return state == ("idle" if engine == "postgresql" else "Sleep")


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def read_trail(path, ending=False):
    """The trail's lines; the write-ahead `ending` lines (each followed by an outcome line) only with ending=True."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return [line for line in lines if ending or line.get("outcome") != "ending"]


def ended_keys(report, field="key"):
    """{(host, key or id, bucket)} of the sessions a report says were (or would be) ended."""
    found = set()
    for host, entry in report["hosts"].items():
        for bucket in ("terminated", "cancelled"):
            for item in entry.get(bucket) or []:
                found.add((host, item[field], bucket))
    return found


def edit_inventory(path, change):
    """Load the inventory at `path`, let change(groups) edit its `databases` children, write it back."""
    with open(path) as handle:
        inventory = yaml.safe_load(handle)
    change(inventory["all"]["children"]["databases"]["children"])
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)


def stamped_reports(report_dir, kind, suffix=".json"):
    """The time-stamped report files of `kind` (not the -latest ones), sorted."""
    if not os.path.isdir(report_dir):
        return []
    return sorted(
        name
        for name in os.listdir(report_dir)
        if name.startswith(kind + "-") and name.endswith(suffix) and "-latest" not in name
    )
