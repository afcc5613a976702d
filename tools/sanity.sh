#!/usr/bin/env bash
# ansible-test sanity on a copy of the tree at .../ansible_collections/dbhygiene/sessions
# (ansible-test refuses a symlinked tree). Extra arguments go to ansible-test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Outside the repository: inside it, ansible-test would ask git which files exist
# and find the ignored copy empty. Only files git tracks or would track are copied.
dest="${DBHYGIENE_SANITY_DIR:-/tmp/dbhygiene-ansible-test}/ansible_collections/dbhygiene/sessions"
# A fresh copy every time: rsync --files-from never deletes, and a file renamed or
# removed since the last run must not be checked. (ansible-test keeps its venvs
# under ~/.ansible/test, so nothing slow is lost.)
rm -rf "$dest"
mkdir -p "$dest"
(cd "$root" && git ls-files -co --exclude-standard -z) |
  rsync -a --from0 --files-from=- "$root/" "$dest/"
# ansible-test --venv downloads a pip bootstrap from a host this machine cannot
# reach; this stand-in uses the interpreter's own ensurepip instead.
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
cat > "$cache/get_pip_24_2.py" <<'PY'
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
PY
cd "$dest"
pyver=$("$root/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec "$root/.venv/bin/ansible-test" sanity --venv --python "$pyver" --color no "$@"
