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


class _Parents(object):
    """pid -> parent pid of the processes in /proc, each /proc/N/stat read once: a scan
    reads only the processes new since the last one, so a watcher can scan every few
    milliseconds beside a server of hundreds of backends."""

    def __init__(self):
        self.parent_of = {}

    def children(self, main):
        live = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            live.add(pid)
            if pid not in self.parent_of:
                try:
                    with open("/proc/%s/stat" % entry) as handle:
                        self.parent_of[pid] = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # gone meanwhile
        for pid in set(self.parent_of) - live:
            del self.parent_of[pid]
        return [pid for pid, parent in self.parent_of.items() if parent == main]


def server_pids(server, first=(), parents=None):
    """The server's processes: the PostgreSQL postmaster and every process it forked (the
    ones not in `first` before those in it), the MariaDB server's one process. `parents`
    (a _Parents) keeps what earlier scans read."""
    module = postgres if server["engine"] == "postgresql" else mariadb
    main = module.running_pid(server)
    if not main:
        raise AssertionError("%s is not running" % server["name"])
    if server["engine"] != "postgresql":
        return [main]
    children = (parents or _Parents()).children(main)
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
        self._parents = _Parents()
        self._main = None
        self.pids = self._scan()
        self.stopped = []
        self.fired = None
        self.watchdog = None
        self._stop = threading.Event()
        self._poll = select.poll()
        for session in held:
            self._poll.register(_socket_of(session), select.POLLIN | select.POLLHUP | select.POLLERR)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _scan(self):
        """The server's pids, victims last (the postmaster's pid read once: it does not change
        while the watch is armed, and a pid file read is the slow part of a scan)."""
        if self._main is None:
            self._main = server_pids(self.server)[0]
        if self.server["engine"] != "postgresql":
            return [self._main]
        children = self._parents.children(self._main)
        later = set(self.victims)
        return [self._main] + [p for p in children if p not in later] + [p for p in children if p in later]

    def _run(self):
        while not self._stop.is_set():
            # The sweep's own backend, forked since the watch was armed, must be in the list
            # when the first victim dies (stopped before the victims' backends): the list is
            # scanned again between 5 ms polls (a scan reads only the new processes).
            if self._poll.poll(5):
                break
            self.pids = self._scan()
        else:
            return
        if self.what == "freeze":
            self.stopped = send(self.pids, signal.SIGSTOP)
            self.stopped += send([p for p in self._scan() if p not in self.stopped], signal.SIGSTOP)  # forked since
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
