#!/usr/bin/env bash
# venv.sh DIR X.Y REQUIREMENTS CONSTRAINTS: a virtualenv at DIR on Python X.Y with the pinned
# packages, and tools/ on its path (so `DIR/bin/python -m dbfleet` works).
#
# The interpreter: $DBHYGIENE_PYTHON<X.Y> (e.g. DBHYGIENE_PYTHON3_12=/opt/py/bin/python3.12),
# else the newest pyenv version X.Y.*, else pythonX.Y on PATH (not a pyenv shim). None of
# them: fail, saying how to get one. A venv on another Python version is made anew.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1 want=$2 requirements=$3 constraints=$4

runs_as() {  # runs_as EXE: EXE is a Python X.Y that can make virtualenvs
  [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ] &&
    "$1" -c 'import venv, ensurepip' 2>/dev/null
}

find_python() {
  local var="DBHYGIENE_PYTHON${want//./_}" exe
  if [ -n "${!var:-}" ]; then
    runs_as "${!var}" && { echo "${!var}"; return; }
    echo "$var=${!var} is not a Python $want with venv and ensurepip" >&2
    return 1
  fi
  # pyenv's versions, also when pyenv itself is not on PATH; newest patch release first.
  local pyenv_root="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
  for exe in $(printf '%s\n' "$pyenv_root/versions/$want".*/bin/"python$want" | sort -V -r); do
    runs_as "$exe" && { echo "$exe"; return; }
  done
  # A real pythonX.Y on PATH (pyenv's shims only run inside their version, so skip them).
  local IFS=:
  for d in $PATH; do
    case "$d" in */.pyenv/shims) continue ;; esac
    runs_as "$d/python$want" && { echo "$d/python$want"; return; }
  done
  return 1
}

if ! python=$(find_python); then
  cat >&2 <<EOF
no Python $want found: $(basename "$dir") is where make test runs ansible-core on Python $want.
Get one, then run make again:
  - with pyenv: pyenv install $want   (https://github.com/pyenv/pyenv#installation)
  - or from the distribution where it has it: apt-get install python$want python$want-venv
  - or point DBHYGIENE_PYTHON${want//./_} at a python$want that has the venv module
EOF
  exit 1
fi

if [ -x "$dir/bin/python" ] && ! runs_as "$dir/bin/python"; then
  echo "$dir is not on Python $want: making it anew"
  rm -rf "$dir"
fi
[ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
echo "$(basename "$dir"): Python $want ($python), $requirements with $constraints"
"$dir/bin/pip" install -q --disable-pip-version-check -r "$root/$requirements" -c "$root/$constraints"
echo "$root/tools" >"$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/dbhygiene-tools.pth"
touch "$dir/.installed"
