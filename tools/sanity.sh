#!/usr/bin/env bash
# ansible-test sanity on a copy of the tree at .../ansible_collections/dbhygiene/sessions
# (ansible-test refuses a symlinked tree). Extra arguments go to ansible-test.
#
# DBHYGIENE_VENV: the virtualenv whose ansible-test runs (default .venv, the newest core;
#   .venv-2.16 for the oldest supported core).
# DBHYGIENE_SANITY_PYTHONS: `venv` (default) runs the multi-version tests (compile, import)
#   on the venv's Python only; `all` on every target Python ansible-test supports that is
#   found (pyenv's versions are put on PATH), so that the modules are compiled and imported
#   for the old Pythons of database hosts (tests/config.yml: 3.8+).
# DBHYGIENE_SANITY_DIR: where the copy goes (default /tmp/dbhygiene-ansible-test-<venv name>).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${DBHYGIENE_VENV:-$root/.venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
if [ ! -x "$venv/bin/ansible-test" ]; then
  echo "sanity: no ansible-test in $venv (make venv creates .venv, make venv-2.16 .venv-2.16)" >&2
  exit 1
fi
# Outside the repository: inside it, ansible-test would ask git which files exist
# and find the ignored copy empty. Only files git tracks or would track are copied.
# One directory per venv, so that both cores' sanity runs can go on at once.
dest="${DBHYGIENE_SANITY_DIR:-/tmp/dbhygiene-ansible-test-$(basename "$venv")}/ansible_collections/dbhygiene/sessions"
# A fresh copy every time: rsync --files-from never deletes, and a file renamed or
# removed since the last run must not be checked. (ansible-test keeps its venvs
# under ~/.ansible/test, so nothing slow is lost.)
rm -rf "$dest"
mkdir -p "$dest"
(cd "$root" && git ls-files -co --exclude-standard -z) |
  rsync -a --from0 --files-from=- "$root/" "$dest/"
# ansible-test --venv downloads a pip bootstrap from a host this machine cannot
# reach; this stand-in uses the interpreter's own ensurepip instead. One copy under
# each name this ansible-test may ask for (its pip versions differ per core and Python).
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
"$venv/bin/python" - "$cache" <<'PY'
import os
import re
import sys

import ansible_test

source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
with open(source) as f:
    versions = set(re.findall(r"pip='([0-9.]+)'", f.read()))
stand_in = '''import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
'''
for version in versions:
    with open(os.path.join(sys.argv[1], "get_pip_%s.py" % version.replace(".", "_")), "w") as f:
        f.write(stand_in)
PY
cd "$dest"
if [ "${DBHYGIENE_SANITY_PYTHONS:-venv}" = all ]; then
  # Every Python pyenv has goes first on PATH under its own name only (python3.8, ...; the
  # pyenv shims of those names fail outside their version); ansible-test picks those it
  # supports and says which it skips for want of an interpreter.
  if command -v pyenv >/dev/null; then
    pythons="$(dirname "$dest")/.pythons"
    rm -rf "$pythons"
    mkdir -p "$pythons"
    for exe in "$(pyenv root)"/versions/*/bin/python3.*; do
      # python3.8 and newer (tests/config.yml), not python3.N-config and the like
      case "$(basename "$exe")" in python3.[89] | python3.[1-9][0-9]) ;; *) continue ;; esac
      [ -x "$exe" ] && [ ! -e "$pythons/$(basename "$exe")" ] && ln -s "$exe" "$pythons/"
    done
    export PATH="$pythons:$PATH"
  fi
  exec "$venv/bin/ansible-test" sanity --venv --color no "$@"
fi
pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec "$venv/bin/ansible-test" sanity --venv --python "$pyver" --color no "$@"
