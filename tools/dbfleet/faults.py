"""Faults of a fleet server for the tests: freeze it (SIGSTOP), kill it (SIGKILL), thaw
it, and do either the moment the first of some held sessions dies.

    watch = at_first_death(fleet, "pg2", held, "freeze")   # armed; a thread watches
    ... run what ends the sessions ...
    watch.done()       # thaws a frozen server (also when nothing died)
    watch.fired        # monotonic time it fired, or None

A frozen server is always thawed by `done()` and, should the test process die
first, by a watchdog process after `thaw_after` seconds.
"""

import os
import select
import signal
import subprocess
import threading
import time

from dbfleet import mariadb, postgres


def server_pids(server, first=()):
    """The server's processes: the PostgreSQL postmaster and every process it forked (the
    ones not in `first` before those in it), the MariaDB server's one process."""
    module = postgres if server["engine"] == "postgresql" else mariadb
    main = module.running_pid(server)
    if not main:
        raise AssertionError("%s is not running" % server["name"])
    if server["engine"] != "postgresql":
        return [main]
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == main:
                children.append(int(entry))
    later = set(first)
    return [main] + [pid for pid in children if pid not in later] + [pid for pid in children if pid in later]


def send(pids, sig):
    """`sig` to each pid in order; the pids that got it."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:  # a backend that ended meanwhile
            continue
        sent.append(pid)
    return sent


def _socket_of(held):
    conn = held.conn
    if hasattr(conn, "fileno"):  # psycopg2
        return conn.fileno()
    return conn._sock.fileno()  # PyMySQL


class at_first_death(object):
    """Watch the client sockets of `held` sessions of `server_name`; when the server ends the
    first one (its socket turns readable: the goodbye or EOF), do `what` at once:
    "freeze" (SIGSTOP every process of the server, the held sessions' backends last) or
    "kill" (SIGKILL, same order)."""

    def __init__(self, fleet, server_name, held, what="freeze", thaw_after=120):
        self.server = fleet.server(server_name)
        self.what = what
        self.thaw_after = thaw_after
        self.victims = [h.id for h in held]
        self.pids = server_pids(self.server, first=self.victims)
        self.stopped = []
        self.fired = None
        self.watchdog = None
        self._stop = threading.Event()
        self._poll = select.poll()
        for session in held:
            self._poll.register(_socket_of(session), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        refreshed = time.monotonic()
        while not self._stop.is_set():
            if self._poll.poll(5):
                break
            if time.monotonic() - refreshed > 0.05:
                # The sweep's own backend, forked since: stopped before the victims' backends.
                self.pids = server_pids(self.server, first=self.victims)
                refreshed = time.monotonic()
        else:
            return
        if self.what == "freeze":
            self.stopped = send(self.pids, signal.SIGSTOP)
            self.stopped += send(server_pids(self.server), signal.SIGSTOP)  # anything forked meanwhile
            self.watchdog = subprocess.Popen(
                ["sh", "-c", "sleep %d; kill -CONT %s" % (self.thaw_after, " ".join(map(str, self.stopped)))],
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            send(self.pids, signal.SIGKILL)
        self.fired = time.monotonic()

    def thaw(self):
        send(reversed(self.stopped), signal.SIGCONT)
        self.stopped = []
        if self.watchdog is not None:
            os.killpg(self.watchdog.pid, signal.SIGTERM)
            self.watchdog.wait()
            self.watchdog = None

    def done(self):
        self._stop.set()
        self._thread.join(10)
        self.thaw()
