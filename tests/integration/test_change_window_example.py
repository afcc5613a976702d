# -*- coding: utf-8 -*-
"""The worked change-window example of the change-windows guide, run as written on a PostgreSQL
and a MariaDB server: the variables file and the commands are read from the guide's text
(docs/guides/change-windows.md, section "A change window, worked example"), so the example cannot
drift from what the collection does.

The test provides what the guide assumes exists: the `billing` database with its table, the
application's login (`billing_app`) with sessions on it, the migration's login (`migrator`),
the window's login (`dba`, its password in the inventory as `vault_dba_password`).
"""

import os
import re
import shlex
import subprocess
import sys

import psycopg2
import pymysql
import pytest
import yaml
from _change_window_fixtures import PASSWORD, Window
from _roles_fixtures import ROOT, close_all, read_json, read_trail
from conftest import ansible_env
from dbfleet import holder

GUIDE = os.path.join("docs", "guides", "change-windows.md")
SECTION = "## A change window, worked example"
HOSTS = ("pg1", "mariadb1")


def _section():
    """The guide's section of the example, up to the next heading of its level (outside code blocks)."""
    with open(os.path.join(ROOT, GUIDE), encoding="utf-8") as handle:
        lines = handle.read().splitlines(True)
    start = lines.index(SECTION + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        if lines[end].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[end].startswith("## "):
            break
    else:
        end = len(lines)
    return "".join(lines[start:end])


def _blocks(text, language):
    return re.findall(r"```%s\n(.*?)```" % language, text, re.DOTALL)


def example():
    """(the variables file's name and text, the commands in order) as the guide gives them."""
    text = _section()
    name = re.search(r"`([\w.-]+\.yml)`", text).group(1)
    variables = [block for block in _blocks(text, "yaml") if block.lstrip().startswith("# " + name)]
    assert len(variables) == 1, "the guide's section has one ```yaml block starting with '# %s'" % name
    commands = []
    for block in _blocks(text, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(line[2:].split("  #", 1)[0].strip())
    return name, variables[0], commands


def _sql_of(command):
    """The statement of a `psql ... -c '...'` / `mysql ... -e '...'` line."""
    argv = shlex.split(command)
    flag = "-c" if argv[0] == "psql" else "-e"
    return argv[0], argv[argv.index(flag) + 1]


def _as_migrator(fleet, host, statement):
    server = fleet.server(host)
    if server["engine"] == "postgresql":
        conn = psycopg2.connect(
            host=server["host"],
            port=server["port"],
            user="migrator",
            password=PASSWORD,
            dbname="billing",
            sslmode="disable",
        )
        conn.autocommit = True
    else:
        conn = pymysql.connect(
            host=server["host"],
            port=server["port"],
            user="migrator",
            password=PASSWORD,
            database="billing",
            ssl_disabled=True,
        )
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


@pytest.fixture
def window(fleet):
    """billing (with a table) and its logins on every host; the window's login `dba`."""
    grants = {"billing_app": ["billing"], "migrator": ["billing"]}
    windows = {host: Window(fleet, host, ("billing",), ("billing_app", "migrator", "dba"), grants) for host in HOSTS}
    for host, win in windows.items():
        win.create()
        conn = win._admin()  # pylint: disable=protected-access
        try:
            cur = conn.cursor()
            if win.engine == "postgresql":
                cur.execute("ALTER ROLE dba SUPERUSER")
                cur.execute("ALTER DATABASE billing OWNER TO migrator")
            else:
                for account in ("%", "localhost"):
                    cur.execute("GRANT ALL ON *.* TO 'dba'@%s WITH GRANT OPTION", (account,))
        finally:
            conn.close()
        table = "CREATE TABLE invoices (id integer PRIMARY KEY, amount numeric(10, 2))"
        _as_migrator(fleet, host, table)
    yield windows
    for win in windows.values():
        win.drop()


def test_the_guides_change_window_example_runs_as_written(fleet, tmp_path, window):
    name, variables, commands = example()
    assert [c.split()[0] for c in commands] == [
        "ansible-playbook",
        "ansible-playbook",
        "psql",
        "mysql",
        "ansible-playbook",
    ]
    assert "--check --diff" in commands[0] and "dbhygiene_drain_state=open" in commands[4]
    (tmp_path / name).write_text(variables)
    window_vars = yaml.safe_load(variables)
    report_dir = window_vars["dbhygiene_report_dir"]
    trail = window_vars["dbhygiene_audit_log"]
    assert report_dir.startswith("~/") and trail.startswith("~/"), "the example writes under the home directory"

    with open(fleet.inventory) as handle:
        inventory = yaml.safe_load(handle)
    groups = inventory["all"]["children"]["databases"]["children"]
    for group in groups.values():
        group["hosts"] = {h: v for h, v in group["hosts"].items() if h in HOSTS}
    inventory["all"]["vars"]["vault_dba_password"] = PASSWORD
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    home = tmp_path / "home"
    home.mkdir()

    held = [
        holder.open_session(fleet, host, kind, user="billing_app", password=PASSWORD, database="billing")
        for host in HOSTS
        for kind in ("idle", "active")
    ]
    try:
        before = {host: win.catalog() for host, win in window.items()}
        bin_dir = os.path.dirname(sys.executable)
        outputs = []
        for step, command in enumerate(commands):
            if command.startswith("ansible-playbook"):
                argv = shlex.split(command)
                argv[0] = os.path.join(bin_dir, "ansible-playbook")
                proc = subprocess.run(
                    argv,
                    cwd=str(tmp_path),
                    env=ansible_env({"HOME": str(home)}),
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                outputs.append(proc.stdout + proc.stderr)
                assert proc.returncode == 0, (command, outputs[-1][-5000:])
            else:
                client, statement = _sql_of(command)
                host = "pg1" if client == "psql" else "mariadb1"
                _as_migrator(fleet, host, statement)
            if step == 0:  # the dry run: nothing changed, nobody ended
                assert {host: win.catalog() for host, win in window.items()} == before
                assert all(session.alive() for session in held)
                assert read_json(str(home / report_dir[2:] / "drain-check-latest.json"))["check_mode"] is True
                assert not os.path.exists(str(home / report_dir[2:] / "drain-latest.json"))
            if step == 1:  # drained: the application is out, the migration is in
                assert not any(session.alive() for session in held)
                for host, win in window.items():
                    assert not win.can_connect("billing_app", "billing"), host
                    assert win.can_connect("migrator", "billing"), host
                report = read_json(str(home / report_dir[2:] / "drain-latest.json"))
                assert report["totals"]["hosts_still_closed"] == 2 and report["totals"]["ended"] >= 2
        # opened: the rights are what they were, the change is there
        assert {host: win.catalog() for host, win in window.items()} == before
        for host, win in window.items():
            assert win.can_connect("billing_app", "billing"), host
        report = read_json(str(home / report_dir[2:] / "drain-latest.json"))
        assert report["totals"]["hosts_still_closed"] == 0 and report["totals"]["failed"] == 0
        lines = read_trail(str(home / trail[2:]))
        assert {line["check_mode"] for line in lines} == {True, False}
        assert {line["drain_state"] for line in lines} == {"drained", "open"}
        # The guide shows what these runs print: the same recap and the same report table.
        section = _section()
        for host in HOSTS:
            assert re.search(r"^%s\s+: ok=" % host, section, re.MULTILINE), host
        headings = "| host | engine | status | state | databases | changed | ended | still closed |"
        assert headings in section
    finally:
        close_all(held)
