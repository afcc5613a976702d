"""The fleet's state directory and its description file, fleet.json.

Layout of the state directory (default /tmp/dbhygiene-fleet, or
$DBFLEET_STATE_DIR, or --state-dir):

    fleet.json          servers, logins and passwords (mode 0600)
    inventory.yml       Ansible inventory for the fleet (mode 0600)
    pki/                test CA, server and client certificates
    pg<N>/              one PostgreSQL server: data/, sock/, server.log
    mariadb<N>/         one MariaDB server: data/, sock/, error.log
    pg<N>-standby/      a hot standby of pg<N>, mariadb<N>-replica/ a replica of mariadb<N>
                        (dbfleet.replicas, started on demand)
    holders/            pid files of `dbfleet hold --detach` processes
"""

import json
import os
import pwd
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

DEFAULT_STATE_DIR = "/tmp/dbhygiene-fleet"

# Logins created on every server. The hygiene logins hold only the rights the
# modules need; nopriv holds none (for the privilege preflight tests).
ADMIN_USER = "fleet_admin"
HYGIENE_USER = "hygiene"
HYGIENE_CERT_USER = "hygiene_cert"
NOPRIV_USER = "nopriv"
APP_USERS = ("app", "app2", "backup_agent", "replicator")
APP_DATABASE = "appdb"


def state_dir(explicit=None):
    return os.path.abspath(explicit or os.environ.get("DBFLEET_STATE_DIR") or DEFAULT_STATE_DIR)


def fleet_file(sdir):
    return os.path.join(sdir, "fleet.json")


class Fleet(object):
    """The description of a fleet, as written by `up`."""

    def __init__(self, data, sdir):
        self.data = data
        self.state_dir = sdir

    @property
    def servers(self):
        return self.data["servers"]

    @property
    def passwords(self):
        return self.data["passwords"]

    @property
    def pki(self):
        return self.data["pki"]

    @property
    def replicas(self):
        """The replicas started on demand (dbfleet.replicas): server entries with `primary` and `role`."""
        return self.data.get("replicas", [])

    def server(self, name):
        """The server or replica called `name`."""
        for server in self.servers + self.replicas:
            if server["name"] == name:
                return server
        raise KeyError("no server %r in the fleet at %s" % (name, self.state_dir))

    def by_engine(self, engine):
        return [s for s in self.servers if s["engine"] == engine]

    def password(self, user):
        if user in APP_USERS:
            return self.passwords["app"]
        return self.passwords[user]

    @property
    def inventory(self):
        return os.path.join(self.state_dir, "inventory.yml")


def load(explicit=None):
    """The fleet described in the state directory, or None if there is none."""
    sdir = state_dir(explicit)
    try:
        with open(fleet_file(sdir)) as f:
            return Fleet(json.load(f), sdir)
    except FileNotFoundError:
        return None


def save(fleet):
    path = fleet_file(fleet.state_dir)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(fleet.data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def new_passwords(previous=None):
    previous = previous or {}
    names = (ADMIN_USER, HYGIENE_USER, NOPRIV_USER, "app")
    # The URL-safe alphabet keeps the passwords usable in DSNs and CLI flags.
    return {n: previous.get(n) or secrets.token_urlsafe(18) for n in names}


# ---------------------------------------------------------------- processes
def is_root():
    return os.geteuid() == 0


def service_user(name):
    """The OS user a server runs as: `name` when we are root, else ourselves."""
    if not is_root():
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise SystemExit(
            "dbfleet: OS user %r does not exist; install the server package (make deps) or create the user" % name
        )
    return name


def chown_tree(path, user):
    if not is_root():
        return
    entry = pwd.getpwnam(user)
    for root, _dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def run_as(user, argv, **kwargs):
    """Run argv as `user` (via runuser when we are root), raising with its output on failure."""
    if is_root() and user != "root":
        argv = ["runuser", "-u", user, "--"] + list(argv)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(argv), proc.returncode, proc.stdout))
    return proc.stdout


def parallel(fn, items):
    """Run fn over items on threads; re-raise the first failure after all finished."""
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    errors = [f.exception() for f in futures if f.exception()]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A server this process started (a MariaDB restarted by dbfleet.replicas) is our child:
        # once it exited it stays a zombie, which kill(0) finds, until it is reaped here.
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return True


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (FileNotFoundError, ValueError):
        return None


def python():
    return sys.executable
