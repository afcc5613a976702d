"""What the test suites share about the fleet: bring it up when it is not running, and
poll for a condition. tests/integration and tests/reliability both use these."""

import os
import subprocess
import sys
import time

from dbfleet import mariadb, pgbin, postgres, state

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def running(server):
    """Whether the fleet server's process is up."""
    return (postgres if server["engine"] == "postgresql" else mariadb).running_pid(server) is not None


def _other_binaries(fleet):
    """Whether the fleet's PostgreSQL servers run other binaries than $DBFLEET_PG_MAJOR asks for
    (`up` then refuses, saying so, rather than the suites running on the wrong major)."""
    wanted = pgbin.bindir(pgbin.parse_major(os.environ.get("DBFLEET_PG_MAJOR")))
    return any(postgres.bindir(s) != wanted for s in fleet.by_engine("postgresql"))


def ensure(postgres_count, mariadb_count):
    """The fleet of $DBFLEET_STATE_DIR, started (`python -m dbfleet up`) when it is missing
    or any of its servers is down; $DBFLEET_FIRST names its first address, $DBFLEET_PG_MAJOR
    its PostgreSQL major (default: Debian's)."""
    fleet = state.load()
    if fleet is None or not all(running(s) for s in fleet.servers) or _other_binaries(fleet):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dbfleet",
                "up",
                "--postgres",
                str(postgres_count),
                "--mariadb",
                str(mariadb_count),
                "--first",
                os.environ.get("DBFLEET_FIRST", "1"),
            ],
            check=True,
            env=dict(os.environ, PYTHONPATH=TOOLS),
        )
        fleet = state.load()
    return fleet


def wait_until(predicate, timeout=5.0, interval=0.05):
    """Poll `predicate` until it is true or `timeout` seconds pass; its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
