# Build / CI / quality gates for the todoapi.pgbackup collection.
#
#   make venv         Debian packages + .venv (scripts/bootstrap.sh, idempotent)
#   make lint         ansible-lint (production profile) + ansible-doc render check
#   make sanity       ansible-test sanity (scripts/ansible-test.sh)
#   make units        ansible-test units  (fails if zero tests ran)
#   make integration  pytest tests/integration (pytest's "no tests" exit 5 fails)
#   make molecule     molecule test (only if molecule/default exists)
#   make test         venv lint sanity units integration molecule, fail-fast
#   make demo         scripts/demo.sh
#   make bench        bench/run.sh
#   make lab          a lab of six real hosts for multi-host plays (scripts/lab.sh up, docs/lab.md)
#   make lab-down     remove it (scripts/lab.sh down)
#   make build        collection tarball in build/
#   make changelog    antsibull-changelog lint + release
#
# Everything uses .venv/bin/... explicitly; .venv/bin is also put first on
# PATH so that tools spawning ansible-playbook & co. find the pinned ones.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Ordered gates: never run in parallel, stop at the first failure.
.NOTPARALLEL:

ROOT      := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV      := $(ROOT)/.venv
BIN       := $(VENV)/bin
PYTHON    := $(BIN)/python

NAMESPACE := todoapi
NAME      := pgbackup

# todoapi.pgbackup resolves from the checkout through this symlink; the
# collections shipped in the `ansible` PyPI package still resolve from
# site-packages (ANSIBLE_COLLECTIONS_SCAN_SYS_PATH defaults to true).
COLLECTIONS_DIR := $(ROOT)/build/collections
COLLECTION_LINK := $(COLLECTIONS_DIR)/ansible_collections/$(NAMESPACE)/$(NAME)

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_DIR)

# ansible-lint and molecule (through ansible-compat) put $$ANSIBLE_HOME/collections
# ahead of ANSIBLE_COLLECTIONS_PATH, and molecule installs a *copy* of the
# collection there.  With the default ~/.ansible that copy outlives the run and
# the next lint checks it instead of the checkout.  Pointing ANSIBLE_HOME at
# build/ makes that directory COLLECTIONS_DIR, where collection-link already
# holds a symlink to the checkout (ansible-compat then skips its install).
TOOL_ENV := ANSIBLE_HOME=$(ROOT)/build

LINT_DIRS := $(wildcard roles playbooks)

.PHONY: help venv collection-link lint sanity units integration \
        molecule test demo bench lab lab-down build changelog clean

help:
	@sed -n 's/^#   make /  make /p' $(lastword $(MAKEFILE_LIST))

venv:
	@bash $(ROOT)/scripts/bootstrap.sh

collection-link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@if [ ! -L $(COLLECTION_LINK) ] || [ "$$(readlink $(COLLECTION_LINK))" != "../../../.." ]; then \
	  rm -rf $(COLLECTION_LINK); ln -s ../../../.. $(COLLECTION_LINK); \
	fi
	@test -f $(COLLECTION_LINK)/galaxy.yml

lint: venv collection-link
	@if [ -n "$(strip $(LINT_DIRS))" ]; then \
	  echo "== ansible-lint (production) on: $(LINT_DIRS)"; \
	  $(TOOL_ENV) $(BIN)/ansible-lint --offline --profile production $(LINT_DIRS); \
	else \
	  echo "== ansible-lint: no roles/ or playbooks/ directory yet, nothing to lint"; \
	fi
	@echo "== ansible-doc render check (plugins/modules)"
	@bash $(ROOT)/scripts/check-docs.sh
	@echo "== AWX job templates current (docs/awx)"
	@$(PYTHON) $(ROOT)/scripts/awx_surveys.py --check

sanity: venv
	@bash $(ROOT)/scripts/ansible-test.sh sanity

units: venv
	@bash $(ROOT)/scripts/ansible-test.sh units

# pytest exits 5 when it collects no tests; that is a failure here.
# Two pytest-xdist workers: a file stays on one worker (its module fixtures are built once) and the lab
# tests share one (tests/integration/conftest.py); PYTEST_WORKERS=0 runs them one after the other.
PYTEST_WORKERS ?= 2
integration: venv collection-link
	@echo "== pytest tests/integration ($(PYTEST_WORKERS) workers)"
	$(PYTHON) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup) --durations=25 tests/integration

molecule: venv collection-link
	@if [ -d molecule/default ]; then \
	  echo "== molecule test"; \
	  $(TOOL_ENV) $(BIN)/molecule test; \
	else \
	  echo "== molecule: molecule/default does not exist, skipping"; \
	fi

test: venv lint sanity units integration molecule

demo: venv collection-link
	bash $(ROOT)/scripts/demo.sh

bench: venv collection-link
	bash $(ROOT)/bench/run.sh

lab: venv collection-link
	bash $(ROOT)/scripts/lab.sh up

lab-down:
	bash $(ROOT)/scripts/lab.sh down

# Built from a staged copy (.gitignore honoured, no .git): build/ itself holds
# the collection symlink and earlier tarballs, which must not end up inside.
build: venv
	@rm -rf $(ROOT)/build/stage && mkdir -p $(ROOT)/build/stage/$(NAME)
	@rsync -a --exclude=/.git --exclude=/.venv --exclude=/build --exclude=/.cache \
	  --exclude=/.ansible --exclude=/tests/output --exclude=__pycache__ \
	  --exclude=.pytest_cache --exclude='*.pyc' --filter=':- .gitignore' \
	  $(ROOT)/ $(ROOT)/build/stage/$(NAME)/
	$(BIN)/ansible-galaxy collection build --force --output-path $(ROOT)/build $(ROOT)/build/stage/$(NAME)
	@rm -rf $(ROOT)/build/stage
	@ls -l $(ROOT)/build/$(NAMESPACE)-$(NAME)-*.tar.gz

changelog: venv
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog release

clean:
	rm -rf $(ROOT)/build $(ROOT)/tests/output
