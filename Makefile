# dbhygiene.sessions — developer entry points. `make help` lists them.
SHELL := /bin/bash
ROOT := $(abspath .)
# Both ends of the supported range (docs/architecture.md "Supported platforms"): .venv has the newest
# ansible-core (Python 3.12) and every tool; .venv-2.16 the oldest, 2.16 (Python 3.11), for
# the unit, module and role tests and its own ansible-test sanity.
VENV := $(ROOT)/.venv
VENV_OLDEST := $(ROOT)/.venv-2.16
PY := $(VENV)/bin/python
FLEET := $(PY) -m dbfleet
# The test fleet and the demo fleet live apart, so `make test` never stops the demo.
TEST_STATE ?= /tmp/dbhygiene-fleet-test
DEMO_STATE ?= /tmp/dbhygiene-fleet-demo
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.build/collections

.PHONY: help deps venv venv-2.16 collection test test-postgresql-matrix reliability sanity sanity-2.16 units units-2.16 integration lint mypy docs fleet-up fleet-down fleet-status demo demo-down build

help:
	@echo "make demo        start a small fleet, plant ghost sessions, audit (dry run), enforce, audit again"
	@echo "make demo-down   stop the demo fleet"
	@echo "make test        everything CI runs, on ansible-core 2.21 and 2.16: sanity, unit, integration (real servers), molecule, lint"
	@echo "make test-postgresql-matrix  the PostgreSQL engine suites on every major 13-18 (npm-shipped servers), a fleet each"
	@echo "make reliability the reliability suite (races, load, faults, secrets) on a fleet of its own; prints figures"
	@echo "make fleet-up    start the test fleet by hand (3 PostgreSQL, 3 MariaDB); make fleet-down stops it"
	@echo "make build       build the collection tarball into .build/dist"
	@echo "make docs        the documentation site (guides + every module, plugin and role) into .build/docs/html; any warning fails"

deps:
	@bash tools/install-deps.sh

$(VENV)/.installed: requirements.txt requirements-test.txt constraints.txt tools/venv.sh
	@bash tools/venv.sh $(VENV) 3.12 requirements-test.txt constraints.txt

$(VENV_OLDEST)/.installed: requirements.txt requirements-test-2.16.txt constraints-2.16.txt tools/venv.sh
	@bash tools/venv.sh $(VENV_OLDEST) 3.11 requirements-test-2.16.txt constraints-2.16.txt

venv: $(VENV)/.installed

venv-2.16: $(VENV_OLDEST)/.installed

# The collection as Ansible looks for it: .build/collections/ansible_collections/dbhygiene/sessions
collection:
	@mkdir -p .build/collections/ansible_collections/dbhygiene
	@ln -sfn $(ROOT) .build/collections/ansible_collections/dbhygiene/sessions

test: deps venv venv-2.16 collection
	@DBFLEET_STATE_DIR=$(TEST_STATE) bash tools/test.sh

# The PostgreSQL engine suites on every supported major (make test runs 13 and 18 beside 15);
# PG_MAJORS_JOBS=1 runs one major at a time.
PG_MAJORS_JOBS ?= 6
test-postgresql-matrix: deps venv collection
	@DBFLEET_STATE_DIR=$(TEST_STATE) DBHYGIENE_PG_MAJORS_JOBS=$(PG_MAJORS_JOBS) \
		bash tools/test-postgresql-majors.sh 13 14 15 16 17 18

# Races, pgbench load, concurrent sweeps, frozen / stopped servers, secrets at -vvv (issue 8).
reliability: deps venv collection
	@bash tools/reliability.sh

sanity: venv
	bash tools/sanity.sh

sanity-2.16: venv-2.16
	DBHYGIENE_VENV=$(VENV_OLDEST) DBHYGIENE_SANITY_PYTHONS=all bash tools/sanity.sh

units: venv collection
	$(PY) -m pytest -q tests/unit

units-2.16: venv-2.16 collection
	$(VENV_OLDEST)/bin/python -m pytest -q tests/unit

integration: deps venv collection
	DBFLEET_STATE_DIR=$(TEST_STATE) $(PY) -m pytest -q tests/integration

lint: venv collection
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint --profile production

# The typed files (mypy.ini lists them), strict; they are found under .build/collections.
mypy: venv collection
	$(VENV)/bin/mypy

fleet-up: deps venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) up --postgres 3 --mariadb 3

fleet-down: venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) down

fleet-status: venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) status

# The site: antsibull-docs pages of the collection and the guides (docs/), Sphinx with warnings as
# errors and every internal link checked (tools/docs.py; external links are not checked).
docs: venv collection
	$(PY) tools/docs.py

build: venv
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .build/dist

demo: deps venv collection
	@DBFLEET_STATE_DIR=$(DEMO_STATE) bash tools/demo.sh

demo-down: venv
	DBFLEET_STATE_DIR=$(DEMO_STATE) $(FLEET) down
