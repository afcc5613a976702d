# -*- coding: utf-8 -*-
"""dbhygiene_run_on: host over a real SSH connection, as on a fleet whose database hosts are
reached with ssh: an sshd of the test's own (loopback, a free port, key login), the module run by
the host's system Python (/usr/bin/python3) with the distribution's psycopg2 and PyMySQL
(Debian's python3-psycopg2 and python3-pymysql, installed by tools/install-deps.sh), the trail
and the report written on the controller.

The other run_on tests use the local connection plugin; this one goes through ssh, a remote
temporary directory and the host's own interpreter and drivers.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest
import yaml
from _roles_fixtures import (
    ENFORCE,
    close_all,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    write_inventory,
)
from conftest import run_playbook, wait_until

SSHD = "/usr/sbin/sshd"
HOST_PYTHON = "/usr/bin/python3"
HOSTS = ("pg1", "mariadb1")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """(port, client key, log path) of an sshd of our own on every loopback address."""
    missing = [path for path in (SSHD, HOST_PYTHON, shutil.which("ssh")) if not path or not os.path.exists(path)]
    probe = subprocess.run([HOST_PYTHON, "-c", "import psycopg2, pymysql"], capture_output=True, text=True, check=False)
    assert not missing and probe.returncode == 0, (
        "run tools/install-deps.sh (openssh-server, python3-psycopg2, python3-pymysql): %s %s" % (missing, probe.stderr)
    )
    directory = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    shutil.copy(str(directory / "client_key.pub"), str(directory / "authorized_keys"))
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "Port %d" % port,
                "ListenAddress 0.0.0.0",
                "HostKey %s" % (directory / "host_key"),
                "AuthorizedKeysFile %s" % (directory / "authorized_keys"),
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "PidFile %s" % (directory / "sshd.pid"),
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    log = directory / "sshd.log"
    with open(str(log), "w") as stderr:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=stderr)
        try:
            assert wait_until(lambda: _listening(port) or proc.poll() is not None, timeout=10)
            assert proc.poll() is None, log.read_text()
            yield port, str(directory / "client_key"), str(log)
        finally:
            proc.terminate()
            proc.wait(10)


def _inventory(fleet, directory, sshd, policy, interpreters=None):
    port, key, _log = sshd
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(directory / "reports"),
        "dbhygiene_audit_log": str(directory / "audit.jsonl"),
        "dbhygiene_run_on": "host",
    }
    path = write_inventory(fleet, directory, group_vars, hosts=HOSTS)
    with open(path) as handle:
        inventory = yaml.safe_load(handle)
    inventory["all"]["vars"] = {
        "ansible_connection": "ssh",
        "ansible_port": port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": key,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": HOST_PYTHON,
    }
    for group in inventory["all"]["children"]["databases"]["children"].values():
        for name, host_vars in group["hosts"].items():
            if name in (interpreters or {}):
                host_vars["ansible_python_interpreter"] = interpreters[name]
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False)
    return path


def _policy(tag):
    return {
        "name": "ssh-" + tag,
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
        "limits": {"max_fraction": "unlimited"},
    }


def _accepted(log_path):
    with open(log_path) as handle:
        return sum(1 for line in handle if "Accepted publickey for root" in line)


def test_enforce_over_ssh_ends_the_ghosts_with_the_hosts_own_python(fleet, tmp_path, sshd):
    tag = new_tag("ssh")
    inventory = _inventory(fleet, tmp_path, sshd, _policy(tag))
    held = open_sessions(fleet, [(h, "idle", "%s-%s" % (tag, name)) for h in HOSTS for name in ("ghost", "web")])
    password = fleet.password("hygiene")
    logins = _accepted(sshd[2])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, verbosity=3)
        assert run.rc == 0, run.output
        # Over ssh, on each host's own address, with the host's interpreter; not delegated.
        for host in HOSTS:
            assert "<%s> ESTABLISH SSH CONNECTION FOR USER: root" % fleet.server(host)["host"] in run.output
            assert "changed: [%s -> localhost]" % host not in run.output
        assert "Port=%d" % sshd[0] in run.output and HOST_PYTHON in run.output
        assert "transfer mechanism failed" not in run.output
        assert _accepted(sshd[2]) > logins
        for host in HOSTS:
            live = live_sessions(fleet, host, tag)
            ghost, web = [s.id for s in held if s.server["name"] == host]
            assert ghost not in live and web in live
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted((line["host"], line["outcome"]) for line in lines) == [
            ("mariadb1", "terminated"),
            ("pg1", "terminated"),
        ]
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert sorted(report["hosts"]) == sorted(HOSTS)
        assert all(len(report["hosts"][host]["terminated"]) == 1 for host in HOSTS)
        texts = [run.output, open(str(tmp_path / "audit.jsonl")).read()]
        texts += [open(str(tmp_path / "reports" / name)).read() for name in os.listdir(str(tmp_path / "reports"))]
        assert not [text for text in texts if password in text]
    finally:
        close_all(held)


def test_check_mode_over_ssh_ends_nothing(fleet, tmp_path, sshd):
    tag = new_tag("ssh")
    inventory = _inventory(fleet, tmp_path, sshd, _policy(tag))
    held = open_sessions(fleet, [(h, "idle", tag + "-ghost") for h in HOSTS])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, check=True, diff=True)
        assert run.rc == 0, run.output
        for host in HOSTS:
            assert [s.id for s in held if s.server["name"] == host][0] in live_sessions(fleet, host, tag)
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted(line["host"] for line in lines) == sorted(HOSTS)
        assert all(line["check_mode"] is True and line["outcome"] == "would_terminate" for line in lines), lines
    finally:
        close_all(held)


def test_a_host_without_the_driver_fails_alone_naming_its_python(fleet, tmp_path, sshd):
    """pg1's interpreter is a bare virtualenv (no psycopg2): pg1 fails and says which Python
    lacks which library; mariadb1's ghost is still ended, in the trail and the report."""
    bare = tmp_path / "bare"
    subprocess.run([HOST_PYTHON, "-m", "venv", "--without-pip", str(bare)], check=True)
    bare_python = str(bare / "bin" / "python")
    tag = new_tag("ssh")
    inventory = _inventory(fleet, tmp_path, sshd, _policy(tag), interpreters={"pg1": bare_python})
    held = open_sessions(fleet, [(h, "idle", tag + "-ghost") for h in HOSTS])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory)
        assert run.rc != 0
        assert run.stats["pg1"]["failures"] == 1 and run.stats["mariadb1"]["failures"] == 0, run.output
        failed = [r for r in run.results if r["host"] == "pg1" and r["status"] == "failed"]
        assert failed and "psycopg2" in failed[0]["result"]["msg"] and bare_python in failed[0]["result"]["msg"]
        pg_ghost, my_ghost = (
            [s.id for s in held if s.server["name"] == "pg1"][0],
            [s.id for s in held if s.server["name"] == "mariadb1"][0],
        )
        assert pg_ghost in live_sessions(fleet, "pg1", tag)
        assert my_ghost not in live_sessions(fleet, "mariadb1", tag)
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert [(line["host"], line["outcome"]) for line in lines] == [("mariadb1", "terminated")]
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert "pg1" in report["failed_hosts"] and len(report["hosts"]["mariadb1"]["terminated"]) == 1
    finally:
        close_all(held)
