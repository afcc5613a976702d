# -*- coding: utf-8 -*-
"""Secrets at -vvv with hostile passwords, on throw-away logins.

Each password holds quotes, `%`, `$`, backslashes or non-ASCII characters and
ends in a random token. The enforce playbook runs at -vvv with each of them, on
pg1 and mariadb1, on the controller and on the host. Asserted: the token (so the
password, in whatever escaping) is in no output, trail line, report file, and
no process's command line while the plays run. Printed: which logins worked
(a login that fails is a finding for the drivers, not a leak) and any message
that shows part of a password (an encoder error naming a character).
"""

import os
import secrets
import threading

from _common import ENFORCE, Play, admin_execute, figure, new_tag, read_trail, write_inventory
from dbfleet import holder

HOSTS = ("pg1", "mariadb1")


def token():
    return secrets.token_hex(5)


def hostile_passwords():
    return [
        "q'uo\"te%s$HOME\\back\\\\slash-" + token(),
        "pass\u20acword-" + token(),
        "p\u00e4ssw\u00f6rd %(user)s ${PATH} `id` ;--" + token(),
    ]


def _token(password):
    return password.rsplit("-", 1)[-1] if "-" in password else password[-10:]


def create_login(fleet, name, password):
    pg = fleet.server("pg1")
    admin_execute(pg, "DROP ROLE IF EXISTS %s" % name)
    admin_execute(pg, "CREATE ROLE %s LOGIN PASSWORD %%s" % name, (password,))
    admin_execute(pg, "GRANT pg_signal_backend, pg_read_all_stats TO %s" % name)
    my = fleet.server("mariadb1")
    admin_execute(my, "DROP USER IF EXISTS %s@'%%'" % name)
    admin_execute(my, "CREATE USER %s@'%%%%' IDENTIFIED BY %%s" % name, (password,))  # %% survives PyMySQL
    admin_execute(my, "GRANT PROCESS, CONNECTION ADMIN ON *.* TO %s@'%%'" % name)
    admin_execute(my, "GRANT SELECT (User, Host, Super_priv) ON mysql.user TO %s@'%%'" % name)
    admin_execute(my, "GRANT SELECT ON performance_schema.session_connect_attrs TO %s@'%%'" % name)
    # Whether a Sleep thread is in a transaction (a policy with `states` needs the events).
    for table in ("events_transactions_current", "threads", "setup_consumers", "setup_instruments"):
        admin_execute(my, "GRANT SELECT ON performance_schema.%s TO %s@'%%'" % (table, name))


def drop_login(fleet, name):
    admin_execute(fleet.server("pg1"), "DROP ROLE IF EXISTS %s" % name)
    admin_execute(fleet.server("mariadb1"), "DROP USER IF EXISTS %s@'%%'" % name)


class ProcessWatch(object):
    """Read every process's command line (and environment) every 50 ms, looking for the tokens."""

    def __init__(self, tokens):
        self.tokens = [t.encode() for t in tokens]
        self.in_cmdline, self.in_environ = set(), set()
        self.samples = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _scan(self):
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            for kind, found in (("cmdline", self.in_cmdline), ("environ", self.in_environ)):
                try:
                    with open("/proc/%s/%s" % (pid, kind), "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                for token in self.tokens:
                    if token in data:
                        found.add((pid, data.replace(b"\0", b" ")[:300].decode("utf-8", "replace")))
        self.samples += 1

    def _run(self):
        while not self.done.wait(0.05):
            self._scan()

    def stop(self):
        self.done.set()
        self.thread.join(5)


def _files(directory):
    for base, _dirs, names in os.walk(str(directory)):
        for name in names:
            yield os.path.join(base, name)


def test_no_password_anywhere_at_vvv(fleet, tmp_path):
    passwords = hostile_passwords()
    tokens = [_token(p) for p in passwords]
    watch = ProcessWatch(tokens)
    outcomes, leaks, shown_chars, worked = [], [], [], 0
    try:
        for number, password in enumerate(passwords):
            login = "rel_secret_%d" % number
            create_login(fleet, login, password)
            try:
                for run_on in ("controller", "host"):
                    tag = new_tag("secret")
                    directory = tmp_path / ("%s-%s" % (login, run_on))
                    directory.mkdir()
                    group_vars = {
                        "dbhygiene_policy": {
                            "name": "secrets-" + tag,
                            "limits": {
                                "max_terminations": "unlimited",
                                "max_fraction": "unlimited",
                            },  # a stress test, not a limits test
                            "rules": [
                                {
                                    "name": "ghost",
                                    "states": ["idle"],
                                    "applications": [tag + "-g"],
                                    "idle_longer_than": 0,
                                }
                            ],
                        },
                        "dbhygiene_report_dir": str(directory / "reports"),
                        "dbhygiene_audit_log": str(directory / "audit.jsonl"),
                        "dbhygiene_run_on": run_on,
                        "dbhygiene_login_user": login,
                        "dbhygiene_login_password": password,
                    }
                    inventory = write_inventory(fleet, directory, group_vars, hosts=HOSTS)
                    ghosts = [holder.open_session(fleet, h, "idle", application=tag + "-g") for h in HOSTS]
                    try:
                        play = Play(inventory, playbook=ENFORCE, verbosity=3).wait(300)
                    finally:
                        for ghost in ghosts:
                            ghost.close()
                    places = {"play output": play.output}
                    records, garbled = read_trail(str(directory / "audit.jsonl"))
                    places["trail"] = "\n".join(str(r) for r in records) + "".join(garbled)
                    for path in _files(directory / "reports"):
                        with open(path, encoding="utf-8", errors="replace") as handle:
                            places[os.path.basename(path)] = handle.read()
                    for place, text in places.items():
                        if tokens[number] in text:
                            leaks.append("password %d (%s) in %s" % (number, run_on, place))
                    if "codec can't encode" in play.output or "codec can't decode" in play.output:
                        shown_chars.append(
                            "password %d (%s): an encoder error names a password character" % (number, run_on)
                        )
                    for host, result in sorted(play.host_results().items()):
                        worked += 0 if result.get("failed") else 1
                        if result.get("failed"):
                            outcomes.append(
                                "%s/%s/password %d: %s" % (host, run_on, number, str(result.get("msg"))[-90:])
                            )
            finally:
                drop_login(fleet, login)
    finally:
        watch.stop()
    figure(
        "secrets: %d hostile passwords x 2 run_on x %d hosts at -vvv: %d leaks in output/trail/reports, "
        "%d processes with a password in the command line (%d scans), %d in the environment; %s; "
        "%d of %d logins worked, failed: %s"
        % (
            len(passwords),
            len(HOSTS),
            len(leaks),
            len(watch.in_cmdline),
            watch.samples,
            len(watch.in_environ),
            "; ".join(shown_chars) or "no message names a password character",
            worked,
            worked + len(outcomes),
            "; ".join(outcomes) or "none",
        )
    )
    assert not leaks, leaks
    assert not watch.in_cmdline, sorted(watch.in_cmdline)[:3]
