# dbhygiene.sessions — developer entry points. `make help` lists them.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
FLEET := $(PY) -m dbfleet
# The test fleet and the demo fleet live apart, so `make test` never stops the demo.
TEST_STATE ?= /tmp/dbhygiene-fleet-test
DEMO_STATE ?= /tmp/dbhygiene-fleet-demo
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.build/collections

.PHONY: help deps venv collection test sanity units integration lint fleet-up fleet-down fleet-status demo demo-down build

help:
	@echo "make demo        start a small fleet, plant ghost sessions, audit (dry run), enforce, audit again"
	@echo "make demo-down   stop the demo fleet"
	@echo "make test        everything CI runs: sanity, unit, integration (real servers), molecule, lint"
	@echo "make fleet-up    start the test fleet by hand (3 PostgreSQL, 3 MariaDB); make fleet-down stops it"
	@echo "make build       build the collection tarball into .build/dist"

deps:
	@bash tools/install-deps.sh

$(VENV)/.installed: requirements.txt requirements-test.txt constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt -c constraints.txt
	@echo "$(ROOT)/tools" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/dbhygiene-tools.pth"
	@touch $@

venv: $(VENV)/.installed

# The collection as Ansible looks for it: .build/collections/ansible_collections/dbhygiene/sessions
collection:
	@mkdir -p .build/collections/ansible_collections/dbhygiene
	@ln -sfn $(ROOT) .build/collections/ansible_collections/dbhygiene/sessions

test: deps venv collection
	@DBFLEET_STATE_DIR=$(TEST_STATE) bash tools/test.sh

sanity: venv
	bash tools/sanity.sh

units: venv collection
	$(PY) -m pytest -q tests/unit

integration: deps venv collection
	DBFLEET_STATE_DIR=$(TEST_STATE) $(PY) -m pytest -q tests/integration

lint: venv collection
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint --profile production

fleet-up: deps venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) up --postgres 3 --mariadb 3

fleet-down: venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) down

fleet-status: venv
	DBFLEET_STATE_DIR=$(TEST_STATE) $(FLEET) status

build: venv
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .build/dist

demo: deps venv collection
	@DBFLEET_STATE_DIR=$(DEMO_STATE) bash tools/demo.sh

demo-down: venv
	DBFLEET_STATE_DIR=$(DEMO_STATE) $(FLEET) down
