# clinops.upgrade: every entry point.  `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := true
export PYTHONDONTWRITEBYTECODE := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test lint sanity units integration molecule bench demo changelog docs clean

setup:
	bash tools/setup.sh

## test: everything CI runs; each suite must run at least one test.  The three static checks run side by side (each
## one's output printed whole when it ends, each exit status checked); the molecule scenarios run inside the integration
## run (tests/integration/test_molecule.py), beside the other tests that mostly wait.  docs/DEVELOPING.md: "Time".
test: setup
	$(MAKE) --no-print-directory -j3 --output-sync=target sanity lint units
	$(MAKE) --no-print-directory integration

sanity: setup
	bash tools/ansible-test.sh sanity --requirements

lint: setup
	ANSIBLE_VAULT_PASSWORD_FILE=$(CURDIR)/inventories/example-vault-password.txt $(VENV)/bin/ansible-lint --offline
	$(VENV)/bin/antsibull-changelog lint

units: setup
	mkdir -p build
	bash tools/ansible-test.sh units --requirements 2>&1 | tee build/units.log
	grep -Eq '[1-9][0-9]* passed' build/units.log || { echo 'units: no unit test ran' >&2; exit 1; }

## integration: three workers on two cores (the tests mostly wait on servers and playbooks), then the few that must run alone.
integration: setup
	$(PY) -m pytest -p no:cacheprovider -n 3 --dist worksteal -m "not serial" tests/integration $(PYTEST_ARGS)
	$(PY) -m pytest -p no:cacheprovider -m serial tests/integration $(PYTEST_ARGS) || [ $$? -eq 5 ]

## demo: build the lab (a whole site on this machine) and upgrade it; the last line is the JSON report's path.
## PRODUCT=imageserver: the ImageServer stand-in instead of PMOD (its own folder, /tmp/clinops-lab-imageserver).
## PRODUCT=conaktiv: the ConAktiv lab instead of PMOD's (the default).
## PRODUCT=ksamu: the KSAMU lab on Firebird, a major update with its warning countdown shortened.
PRODUCT ?= pmod
demo: setup
	PRODUCT=$(PRODUCT) bash lab/demo.sh

## molecule: the four scenarios one after the other on the fixed folders /tmp/clinops-molecule-* (`make test` runs them
## in the integration run instead, each on a temp folder).
molecule: setup
	cd extensions && molecule test -s default && molecule test -s imageserver && molecule test -s conaktiv && molecule test -s ksamu

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

## docs: rewrite the key table of docs/PROFILES.md from profiles/schema.json (a test fails when they differ).
docs:
	$(PY) tools/profile_docs.py

changelog: setup
	$(VENV)/bin/antsibull-changelog release

clean:
	rm -rf build tests/output .pytest_cache
