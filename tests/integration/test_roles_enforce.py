# -*- coding: utf-8 -*-
"""The enforce role and playbook on real servers: validation before contact,
run_on host, secrets, AWX job id and set_stats, limits named in the report."""

import json
import os
import stat
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
import yaml
from _roles_fixtures import (
    DOWN_ADDRESS,
    DOWN_HOST,
    ENFORCE,
    ROOT,
    close_all,
    edit_inventory,
    live_sessions,
    new_tag,
    open_sessions,
    read_json,
    read_trail,
    stamped_reports,
    write_inventory,
)
from conftest import ansible_env, run_playbook, wait_until
from dbfleet import mariadb, postgres
from dbfleet.state import APP_DATABASE
from jinja2.sandbox import ImmutableSandboxedEnvironment

HOSTS = ("pg1", "mariadb1")


def _ghost_policy(tag, **extra):
    policy = {
        "name": "roles-" + tag,
        "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
        # The test's sessions may be every client session of a quiet server: no share limit.
        "limits": dict({"max_fraction": "unlimited"}, **extra.pop("limits", {})),
    }
    policy.update(extra)
    return policy


def _group_vars(tmp_path, policy, **extra):
    group_vars = {
        "dbhygiene_policy": policy,
        "dbhygiene_report_dir": str(tmp_path / "reports"),
        "dbhygiene_audit_log": str(tmp_path / "audit.jsonl"),
    }
    group_vars.update(extra)
    return group_vars


def test_bad_policy_fails_the_play_before_any_host_is_contacted(fleet, tmp_path):
    policy = {"name": "bad", "rules": [{"name": "r", "states": ["idle"], "idle_longer_than": "5 minutes"}]}
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=HOSTS, down_host=True)
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    assert "dbhygiene_policy.rules[0].idle_longer_than" in run.output
    assert "'5 minutes'" in run.output
    assert "no host was contacted" in run.output
    # The per-host task never ran: not even the down host was tried.
    assert not [r for r in run.results if r["task"].endswith("End the sessions the policy targets")]
    assert DOWN_ADDRESS not in run.output
    # The run's report says why it stopped (tests/integration/test_dry_runs.py has the rest).
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    assert "dbhygiene_policy.rules[0].idle_longer_than" in report["stopped"]
    assert report["totals"]["failed_by_reason"] == {"stopped": len(HOSTS) + 1}


def test_policy_from_play_vars_is_the_one_checked(fleet, tmp_path):
    """Extra vars win over group_vars: the check sees what the hosts will use."""
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, {"rules": [{"name": "r", "users": ["x"]}]}), hosts=HOSTS
    )
    bad = {"rules": [{"name": "r", "users": ["x"], "client_addresses": ["10.0.0.300"]}]}
    run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"dbhygiene_policy": bad})
    assert run.rc != 0
    assert "dbhygiene_policy.rules[0].client_addresses[0]" in run.output and "10.0.0.300" in run.output


def test_run_on_host_job_id_stats_and_no_secret_at_vvv(fleet, tmp_path):
    tag = new_tag("roles")
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(tag), dbhygiene_run_on="host"), hosts=HOSTS
    )
    held = open_sessions(fleet, [(h, "idle", "%s-%s" % (tag, name)) for h in HOSTS for name in ("ghost", "web")])
    password = fleet.password("hygiene")
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"awx_job_id": 4711}, verbosity=3)
        assert run.rc == 0, run.output
        # run_on host: the module ran over the host's own connection, not delegated to localhost.
        assert "ok: [pg1 -> localhost]" not in run.output and "changed: [pg1 -> localhost]" not in run.output
        for host in HOSTS:
            live = live_sessions(fleet, host, tag)
            ghost, web = [s.id for s in held if s.server["name"] == host]
            assert ghost not in live and web in live
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted(line["host"] for line in lines) == sorted(HOSTS)
        assert {line["job_id"] for line in lines} == {4711}
        assert stat.S_IMODE(os.stat(str(tmp_path / "audit.jsonl")).st_mode) == 0o600
        report = [r for r in run.results if r["task"].endswith("Write the fleet report")][-1]["result"]
        assert report["ansible_stats"]["data"]["dbhygiene_enforce"]["ended"] == 2
        assert report["ansible_stats"]["per_host"] is False
        assert read_json(str(tmp_path / "reports" / "enforce-latest.json"))["job_id"] == 4711
        texts = [run.output, json.dumps(run.results), open(str(tmp_path / "audit.jsonl")).read()]
        texts += [open(str(tmp_path / "reports" / name)).read() for name in os.listdir(str(tmp_path / "reports"))]
        assert not [text for text in texts if password in text]
    finally:
        close_all(held)


def test_limits_refuse_and_the_report_says_why(fleet, tmp_path):
    tag = new_tag("roles")
    policy = _ghost_policy(tag, limits={"max_terminations": 1})
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=("pg1", "pg2"))
    held = open_sessions(fleet, [("pg1", "idle", tag + "-ghost"), ("pg1", "idle", tag + "-ghost")])
    held += open_sessions(fleet, [("pg2", "idle", tag + "-ghost")])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory)
        assert run.rc != 0
        assert run.stats["pg1"]["failures"] == 1 and run.stats["pg2"]["failures"] == 0
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert "max_terminations" in report["failed_hosts"]["pg1"]
        assert report["failed_host_reasons"] == {"pg1": "limit"}
        markdown = open(str(tmp_path / "reports" / "enforce-latest.md")).read()
        assert "**pg1** (limit: a policy limit refused the plan, nothing was ended)" in markdown
        assert report["hosts"]["pg2"]["status"] == "ok" and len(report["hosts"]["pg2"]["terminated"]) == 1
        # pg1: fail closed, both still there; pg2: its one ghost ended.
        assert len(live_sessions(fleet, "pg1", tag)) == 2
        assert live_sessions(fleet, "pg2", tag) == {}
        assert [line["host"] for line in read_trail(str(tmp_path / "audit.jsonl"))] == ["pg2"]
    finally:
        close_all(held)


def test_a_down_host_alone_still_gets_a_report(fleet, tmp_path):
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, _ghost_policy("nothing")), hosts=(), down_host=True
    )
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    assert report["totals"] == dict(report["totals"], hosts=1, ok=0, failed=1)
    assert DOWN_HOST["ansible_host"] in report["failed_hosts"]["pgdown"]
    assert report["failed_host_reasons"] == {"pgdown": "unreachable"}
    assert report["totals"]["failed_by_reason"] == {"unreachable": 1}


def test_a_refused_login_is_reported_as_login(fleet, tmp_path):
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy("nothing")), hosts=HOSTS)

    def wrong_password(groups):
        groups["postgresql"]["hosts"]["pg1"]["dbhygiene_login_password"] = "not-the-password"
        groups["mysql"]["hosts"]["mariadb1"]["dbhygiene_login_password"] = "not-the-password"

    edit_inventory(inventory, wrong_password)
    run = run_playbook(ENFORCE, inventory=inventory)
    assert run.rc != 0
    report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
    assert report["failed_host_reasons"] == {"pg1": "login", "mariadb1": "login"}, report["failed_hosts"]
    markdown = open(str(tmp_path / "reports" / "enforce-latest.md")).read()
    assert "**pg1** (login: the server refused the login)" in markdown


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_policy_as_a_string_from_extra_vars(fleet, tmp_path, form):
    """An AWX survey answer is a string: -e '{"dbhygiene_policy": "<the policy as JSON>"}'."""
    tag = new_tag("roles")
    policy = _ghost_policy(tag)
    text = json.dumps(policy) if form == "json" else yaml.safe_dump(policy, default_flow_style=False)
    inventory = write_inventory(
        fleet, tmp_path, _group_vars(tmp_path, {"rules": [{"name": "r", "users": ["x"]}]}), hosts=HOSTS
    )
    held = open_sessions(fleet, [(h, "idle", "%s-%s" % (tag, name)) for h in HOSTS for name in ("ghost", "web")])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars={"dbhygiene_policy": text})
        assert run.rc == 0, run.output
        for host in HOSTS:
            live = live_sessions(fleet, host, tag)
            ghost, web = [s.id for s in held if s.server["name"] == host]
            assert ghost not in live and web in live
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert sorted(line["host"] for line in lines) == sorted(HOSTS)
        assert {line["policy"] for line in lines} == {policy["name"]}
    finally:
        close_all(held)


def _injected(definition, inputs, file_dir):
    """What AWX injects for a credential of `definition` with `inputs`: (extra_vars, files written)."""
    environment = ImmutableSandboxedEnvironment()

    class Names(object):
        pass

    class Tower(object):
        filename = Names()

    namespace = dict(inputs, tower=Tower())
    for key, template in definition["injectors"].get("file", {}).items():
        name = key.split(".", 1)[1]
        path = os.path.join(file_dir, "awx_" + name)
        with open(path, "w") as handle:
            handle.write(environment.from_string(template).render(namespace))
        os.chmod(path, 0o600)
        setattr(Tower.filename, name, path)
    return {k: environment.from_string(t).render(namespace) for k, t in definition["injectors"]["extra_vars"].items()}


def test_awx_credentials_drive_the_roles_and_default_paths_warn(fleet, tmp_path):
    """The shipped credential types, injected as AWX does, are all the login and TLS a job needs;
    an AWX job writing to the default report dir and trail is warned that they are thrown away."""
    tag = new_tag("roles")
    with open(os.path.join(ROOT, "extensions", "awx", "credential_types.yml")) as handle:
        types = {t["name"]: t for t in yaml.safe_load(handle)["credential_types"]}
    login_type, tls_type = types["dbhygiene.sessions database login"], types["dbhygiene.sessions database TLS"]
    password = fleet.password("hygiene")
    with open(fleet.inventory) as handle:
        ca_file = yaml.safe_load(handle)["all"]["children"]["databases"]["children"]["postgresql"]["vars"][
            "dbhygiene_ca_cert"
        ]
    with open(ca_file) as handle:
        ca_pem = handle.read()
    awx_files = tmp_path / "awx"
    awx_files.mkdir()
    extra_vars = dict(_injected(login_type, {"username": "hygiene", "password": password}, str(awx_files)))
    extra_vars.update(_injected(tls_type, {"ca_cert": ca_pem}, str(awx_files)))
    extra_vars["awx_job_id"] = 31337
    # The inventory has neither the login nor the TLS files: the credentials bring them.
    inventory = write_inventory(fleet, tmp_path, {"dbhygiene_policy": _ghost_policy(tag)}, hosts=HOSTS)

    def no_credentials(groups):
        for group in groups.values():
            for name in ("dbhygiene_login_user", "dbhygiene_login_password", "dbhygiene_ca_cert"):
                group["vars"].pop(name, None)

    edit_inventory(inventory, no_credentials)
    home = tmp_path / "home"  # the defaults are under ~: a home of the test's own
    home.mkdir()
    held = open_sessions(fleet, [(h, "idle", "%s-ghost" % tag) for h in HOSTS])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars=extra_vars, env={"HOME": str(home)})
        assert run.rc == 0, run.output
        for host in HOSTS:
            assert live_sessions(fleet, host, tag) == {}
        output = " ".join(run.output.split())
        assert "this is AWX job 31337: the fleet report goes to the default" in output
        assert "set dbhygiene_report_dir" in output and "set dbhygiene_audit_log" in output
        trail = home / "dbhygiene" / "audit.jsonl"
        assert {line["job_id"] for line in read_trail(str(trail))} == {31337}
        report = read_json(str(home / "dbhygiene" / "reports" / "enforce-latest.json"))
        assert report["totals"]["ended"] == 2 and report["job_id"] == 31337
        assert password not in run.output and password not in trail.read_text()
    finally:
        close_all(held)


def _start_enforce(inventory, check):
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, ENFORCE]
    if check:
        argv.append("--check")
    return subprocess.Popen(argv, cwd=ROOT, env=ansible_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_concurrent_runs_keep_every_report_and_report_keep_prunes(fleet, tmp_path):
    """Three enforce runs at once each keep their own report; dbhygiene_report_keep then prunes the oldest."""
    report_dir = str(tmp_path / "reports")
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(new_tag("roles"))), hosts=HOSTS)
    runs = [_start_enforce(inventory, check=True) for _run in range(3)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0, 0]
    first = stamped_reports(report_dir, "enforce")
    assert len(first) == 3 and len(stamped_reports(report_dir, "enforce", ".md")) == 3
    assert len({read_json(os.path.join(report_dir, name))["run"] for name in first}) == 3

    with open(os.path.join(str(tmp_path), "group_vars", "databases.yml")) as handle:
        group_vars = yaml.safe_load(handle)
    group_vars["dbhygiene_report_keep"] = 2
    with open(os.path.join(str(tmp_path), "group_vars", "databases.yml"), "w") as handle:
        yaml.safe_dump(group_vars, handle)
    run = run_playbook(ENFORCE, inventory=inventory, check=True)
    assert run.rc == 0, run.output
    kept = stamped_reports(report_dir, "enforce")
    assert len(kept) == 2 and len(stamped_reports(report_dir, "enforce", ".md")) == 2
    assert sorted(first)[-1] in kept and not set(sorted(first)[:2]) & set(kept)
    # Dry runs: their reports are enforce-check-*, never a real run's enforce-latest.
    assert all(name.startswith("enforce-check-") for name in kept)
    assert os.path.exists(os.path.join(report_dir, "enforce-check-latest.json"))
    assert not os.path.exists(os.path.join(report_dir, "enforce-latest.json"))


def test_the_trail_survives_a_rotation_between_two_runs(fleet, tmp_path):
    """logrotate without copytruncate: the trail is renamed between two runs; nothing is lost."""
    tag = new_tag("roles")
    trail = str(tmp_path / "audit.jsonl")
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(tag)), hosts=("pg1",))
    held = open_sessions(fleet, [("pg1", "idle", tag + "-ghost")])
    try:
        time.sleep(1.5)
        assert run_playbook(ENFORCE, inventory=inventory).rc == 0
        os.rename(trail, trail + ".1")  # what logrotate does, with `create` making no file until the next write
        held += open_sessions(fleet, [("pg1", "idle", tag + "-ghost")])
        time.sleep(1.5)
        assert run_playbook(ENFORCE, inventory=inventory).rc == 0
        rotated, current = read_trail(trail + ".1"), read_trail(trail)
        assert [line["id"] for line in rotated] == [held[0].id]
        assert [line["id"] for line in current] == [held[1].id]
        assert stat.S_IMODE(os.stat(trail).st_mode) == 0o600
    finally:
        close_all(held)


def _counting_cancels(fleet, server, application, sequence):
    """A session on `server` whose statement ignores cancels and counts them in `sequence`
    (a sequence is not transactional: the count shows while the statement runs).
    Returns (its connection, an admin connection, its pid, a function giving the count)."""
    admin = postgres.admin_connect(server, dbname=APP_DATABASE)
    admin.autocommit = True
    admin.cursor().execute("CREATE SEQUENCE %s" % sequence)
    admin.cursor().execute("GRANT USAGE, SELECT ON SEQUENCE %s TO app" % sequence)
    conn = psycopg2.connect(
        host=server["host"],
        port=server["port"],
        user="app",
        password=fleet.password("app"),
        dbname=APP_DATABASE,
        application_name=application,
        sslmode="disable",
    )
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    statement = (
        "DO $$BEGIN LOOP BEGIN PERFORM pg_sleep(600); EXIT; "
        "EXCEPTION WHEN query_canceled THEN PERFORM nextval('%s'); END; END LOOP; END$$" % sequence
    )

    def run():
        try:
            conn.cursor().execute(statement)
        except psycopg2.Error:  # the session is ended, or the server goes away: the expected way out
            pass

    threading.Thread(target=run, daemon=True).start()

    def cancels():
        count = admin.cursor()
        count.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s" % sequence)
        return count.fetchone()[0]

    return conn, admin, pid, cancels


def test_sessions_ended_before_a_host_fails_are_still_recorded(fleet, tmp_path):
    """Issue 8, lost audit: the server stops in the grace of cancel_then_terminate, after the
    cancel went out (the statement ignores it, so the sweep waits the grace out). The host
    fails, and the cancel is still in the result, the trail and the report, which also says why
    the host failed. Needs the runner that keeps what was ended when a later step fails (h7)."""
    tag = new_tag("roles")
    server = fleet.server("pg3")
    sequence = "cancels_" + tag.replace("-", "_")
    policy = {
        "name": "roles-" + tag,
        "action": "cancel_then_terminate",
        "grace": "20s",
        "rules": [
            {"name": "runaway", "states": ["active"], "applications": [tag + "-batch"], "running_longer_than": 1}
        ],
        "limits": {"max_fraction": "unlimited"},
    }
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, policy), hosts=("pg3",))
    conn, admin, pid, cancels = _counting_cancels(fleet, server, tag + "-batch", sequence)
    runner = None
    try:
        assert wait_until(lambda: live_sessions(fleet, "pg3", tag).get(pid) == "active", timeout=10)
        time.sleep(1.5)
        runner = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, ENFORCE],
            cwd=ROOT,
            env=ansible_env({}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The cancel arrives (the statement counts it and goes on): the sweep is in its grace wait.
        wait_until(lambda: cancels() >= 1 or runner.poll() is not None, timeout=60, interval=0.02)
        assert cancels() >= 1, "the cancel never came (the run ended with %s)" % runner.poll()
        postgres.stop(server)  # the server goes away in the middle of the sweep
        assert runner.wait(timeout=120) != 0
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        entry = report["hosts"]["pg3"]
        assert entry["status"] == "failed", entry
        assert [item["id"] for item in entry.get("cancelled") or []] == [pid], entry
        assert report["totals"]["cancelled"] == 1
        assert report["failed_host_reasons"]["pg3"] == "unreachable", report["failed_hosts"]
        lines = read_trail(str(tmp_path / "audit.jsonl"))
        assert [(line["id"], line["outcome"]) for line in lines if line["outcome"] != "not_ended"] == [
            (pid, "cancelled")
        ]
        markdown = open(str(tmp_path / "reports" / "enforce-latest.md")).read()
        assert "1 session was ended before the failure" in markdown
    finally:
        if runner is not None and runner.poll() is None:
            runner.kill()
            runner.wait()
        if postgres.running_pid(server):
            # End the statement first: closing a connection waits for the statement it runs.
            admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        for connection in (conn, admin):
            try:
                connection.close()
            except psycopg2.Error:
                pass
        postgres.start(server)
        cleanup = postgres.admin_connect(server, dbname=APP_DATABASE)
        cleanup.autocommit = True
        try:
            cleanup.cursor().execute("DROP SEQUENCE IF EXISTS %s" % sequence)
        finally:
            cleanup.close()


def _login_like_hygiene(fleet, server_name, user, password):
    """A login of its own on `server_name` with exactly the hygiene login's rights; returns a dropper."""
    server = fleet.server(server_name)
    if server["engine"] == "postgresql":
        conn = postgres.admin_connect(server)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute('CREATE ROLE "%s" LOGIN PASSWORD %%s IN ROLE hygiene' % user, (password,))

        def drop():
            cur.execute('DROP ROLE "%s"' % user)
            conn.close()

        return drop
    conn = mariadb.admin_connect(server)
    cur = conn.cursor()
    cur.execute("SHOW GRANTS FOR 'hygiene'@'%'")
    grants = [row[0] for row in cur.fetchall()]
    cur.execute("CREATE USER '" + user + "'@'%%' IDENTIFIED BY %s", (password,))
    for grant in grants:
        if grant.startswith("GRANT ") and " TO `hygiene`@`%`" in grant:
            statement = grant.split(" IDENTIFIED BY ")[0].replace(" TO `hygiene`@`%`", " TO `%s`@`%%`" % user)
            cur.execute(statement)

    def drop_user():
        cur.execute("DROP USER '%s'@'%%'" % user)
        conn.close()

    return drop_user


def test_one_job_sweeps_a_mixed_fleet_with_a_login_per_engine(fleet, tmp_path):
    """The PostgreSQL and MySQL login credential types, attached to one job as AWX injects them:
    each host uses its engine's login (the generic one, wrong here, is never tried), and no
    password shows; with only one engine's credential, the other engine's hosts fall back to the
    generic login."""
    tag = new_tag("roles")
    suffix = tag.rsplit("-", 1)[1]
    logins = {
        "postgresql": ("sweep_pg_" + suffix, "pg-" + suffix * 2),
        "mysql": ("sweep_my_" + suffix, "my-" + suffix * 2),
    }
    with open(os.path.join(ROOT, "extensions", "awx", "credential_types.yml")) as handle:
        types = {t["name"]: t for t in yaml.safe_load(handle)["credential_types"]}
    injected = {}
    for engine, title in (("postgresql", "PostgreSQL"), ("mysql", "MySQL")):
        user, password = logins[engine]
        injected[engine] = _injected(
            types["dbhygiene.sessions %s login" % title], {"username": user, "password": password}, str(tmp_path)
        )
    inventory = write_inventory(fleet, tmp_path, _group_vars(tmp_path, _ghost_policy(tag)), hosts=HOSTS)

    def generic_login_is_wrong(groups):
        for group in groups.values():
            group["vars"]["dbhygiene_login_user"] = "hygiene"
            group["vars"]["dbhygiene_login_password"] = "not-the-password"

    edit_inventory(inventory, generic_login_is_wrong)
    droppers = [_login_like_hygiene(fleet, "pg1", *logins["postgresql"])]
    droppers.append(_login_like_hygiene(fleet, "mariadb1", *logins["mysql"]))
    held = open_sessions(fleet, [(h, "idle", "%s-ghost" % tag) for h in HOSTS])
    try:
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars=dict(injected["postgresql"], **injected["mysql"]))
        assert run.rc == 0, run.output
        for host in HOSTS:
            assert live_sessions(fleet, host, tag) == {}, host
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert report["totals"]["ended"] == 2
        trail = (tmp_path / "audit.jsonl").read_text()
        for _user, password in logins.values():
            assert password not in run.output and password not in trail

        # Only the PostgreSQL credential: the MariaDB host is left with the generic (wrong) login.
        held += open_sessions(fleet, [(h, "idle", "%s-ghost" % tag) for h in HOSTS])
        time.sleep(1.5)
        run = run_playbook(ENFORCE, inventory=inventory, extra_vars=injected["postgresql"])
        assert run.rc != 0
        report = read_json(str(tmp_path / "reports" / "enforce-latest.json"))
        assert report["failed_host_reasons"] == {"mariadb1": "login"}, report["failed_hosts"]
        assert live_sessions(fleet, "pg1", tag) == {} and live_sessions(fleet, "mariadb1", tag) != {}
    finally:
        close_all(held)
        for drop in droppers:
            drop()
