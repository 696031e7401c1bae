# make up [STACK=dev] [POLICY=1]       deploy a stack (needs the Pulumi CLI and Docker or a cluster)
# make preview [STACK=dev] [POLICY=1]  what `up` would change; POLICY=1 runs the policy pack
# make refresh [STACK=dev]             read the real state of the stack's resources into its state
# make destroy [STACK=dev] [EXCLUDE_PROTECTED=1]   delete the stack's resources (see the notice it prints)
# make test [SERIAL=1]                 ruff, pyright + the test suite, the real-daemon tier beside it (root; no Pulumi CLI or cluster)
# make test-docker                     only the real-daemon tier: dev, staging, prod on a dockerd of its own (root)
# make test-backup                     only the real backup tests: pgBackRest to an S3 server with TLS, point-in-time restore
# make test-app                        only the tests that run the real application's code (its env schemas,
#                                      BullMQ client, SQL migrations, web build in Chromium) against what the program generates
# make restore-drill STACK=dev        Docker: restore the newest backup into a scratch container and check it
# make release STACK=prod              after `make up`: record the deployed release (the `releases` output) in
#                                      Pulumi.<stack>.yaml's aixsss:releases (the newest 20 kept)
# make rollback STACK=prod TO=r7 [POLICY=1]   re-deploy recorded release r7's images without migrations;
#                                      refused (nothing changed) across a migration not declared backward compatible;
#                                      TO= (empty) rolls forward to the configured release
# make render STACK=prod [TARGET=docker|kubernetes] [SET='key=value ...'] [SHOW_SECRETS=1] [OUT=build]
#                                      what a stack would deploy, as files in $(OUT)/<stack>/ (no Pulumi CLI); what it
#                                      generated (keys, certificates, passwords) is kept in $(OUT)/.state/ (0600): same stack, same files
# make audit-diff BASE=<ref> [OUT=build]  every stack on both targets rendered at <ref> and here, and what changes
#                                      for an auditor (flows, ports, TLS/auth, images, secrets, checklist, protected
#                                      resources): $(OUT)/audit-diff/audit-diff.md and .json (no credentials)
# make policy-venv                     the policy pack's venv (policy/venv), for POLICY=1
# make bench [OUT=build]               the rendered edge against a stock TLS proxy, HAProxy and the upstreams on
#                                      loopback (a few minutes; not part of `make test`): $(OUT)/bench/results.json, .png
STACK ?= dev
TARGET ?=
OUT ?= build
VENV ?= venv
# checkov pins dependencies that conflict with Pulumi's, so it lives in a venv of its own.
CHECKOV_VENV ?= venv-checkov
PY := $(VENV)/bin/python
# Pulumi.yaml's runtime.options.virtualenv is `venv`: `pulumi up` runs the program with venv/.
# It gets requirements.txt only (stamp .installed-runtime); the tests' tools come on top from
# requirements-dev.txt (stamp .installed), so deploying never installs them.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed
# PulumiPolicy.yaml names `venv`, relative to the pack: the pack's venv is policy/venv, fixed.
POLICY_VENV := policy/venv
PULUMI ?= pulumi
PREFLIGHT = PULUMI=$(PULUMI) scripts/pulumi-preflight.sh $(STACK)
POLICY_ARGS = $(if $(POLICY),--policy-pack policy --policy-pack-config policy/config/$(STACK).json)
# A local file backend unless the caller chose one; state stays beside the project.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state

.PHONY: venv venv-dev policy-venv preflight up preview refresh destroy release rollback test test-docker test-app test-backup restore-drill lint render audit-diff bench clean

# `test -x` keeps an existing venv as it is (others may be using it); pip then adds what is missing.
# preflight is order-only: under `make -j` too, nothing is installed for a run that cannot start.
$(RUNTIME): requirements.txt | $(if $(filter up preview refresh destroy release rollback,$(MAKECMDGOALS)),preflight)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(RUNTIME)

venv-dev: $(DEV)

$(POLICY_VENV)/.installed: policy/requirements.txt
	test -x $(POLICY_VENV)/bin/python || python3 -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/pip install --quiet --upgrade pip
	$(POLICY_VENV)/bin/pip install --quiet -r policy/requirements.txt
	touch $@

policy-venv: $(POLICY_VENV)/.installed

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

# Before any Pulumi command: the CLI, its version and the passphrase (scripts/pulumi-preflight.sh).
# It comes first among the prerequisites, so nothing is installed for a run that cannot start.
preflight:
	@$(PREFLIGHT)

# The local file backend's directory, when that is the backend.
STATE_DIR = $(if $(filter file://$(CURDIR)/.pulumi-state,$(PULUMI_BACKEND_URL)),mkdir -p .pulumi-state,:)

up: preflight $(RUNTIME) $(if $(POLICY),$(POLICY_VENV)/.installed)
	@$(STATE_DIR)
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) up --stack $(STACK) $(POLICY_ARGS)

preview: preflight $(RUNTIME) $(if $(POLICY),$(POLICY_VENV)/.installed)
	@$(STATE_DIR)
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) preview --stack $(STACK) $(POLICY_ARGS)

# refresh and destroy act on an existing stack: no --create.
refresh: preflight $(RUNTIME)
	$(PULUMI) stack select $(STACK)
	$(PULUMI) refresh --stack $(STACK)

# Protected resources stop `pulumi destroy` with an error: every stack protects the API key
# encryption key (it decrypts users' stored provider keys), staging and prod also their data
# (volumes, PVCs, StatefulSets, the namespace; retain_on_delete too, so those outlive the stack).
destroy: preflight $(RUNTIME)
	@echo "make destroy STACK=$(STACK): protected resources block pulumi destroy (it stops and names them):"
	@echo "  every stack: the API key encryption key (without it, users' stored provider keys are unreadable);"
	@echo "  staging, prod: data volumes, PVCs, StatefulSets and the namespace (retain_on_delete: once"
	@echo "  unprotected, destroy drops them from the state but leaves them in Docker or the cluster)."
	@echo "  Keep them, destroy the rest:  make destroy STACK=$(STACK) EXCLUDE_PROTECTED=1  (pulumi destroy --exclude-protected)"
	@echo "  Destroy them too: back up first (pulumi stack export --stack $(STACK) --file $(STACK)-state.json,"
	@echo "  and the data), then pulumi state unprotect --all --stack $(STACK), then make destroy again."
	$(PULUMI) stack select $(STACK)
	$(PULUMI) destroy --stack $(STACK)$(if $(EXCLUDE_PROTECTED), --exclude-protected)

# Releases as data (README: Releases and rollback): scripts/releases.py edits the stack file
# with `pulumi config`, after checking with the program's own config model. It reads the stack
# file as `make render` does (offline/), hence the dev venv.
release: preflight $(DEV)
	PULUMI=$(PULUMI) $(PY) scripts/releases.py record --stack $(STACK)

# A refused rollback stops here with the model's report, before any config or resource changes.
rollback: preflight $(DEV)
	PULUMI=$(PULUMI) $(PY) scripts/releases.py rollback --stack $(STACK) --to '$(TO)'
	$(MAKE) --no-print-directory up STACK=$(STACK) $(if $(POLICY),POLICY=$(POLICY))

# pyright ([tool.pyright] in pyproject.toml) is the judge no API server or provider can be here:
# the SDKs' typed Args make a misspelt field an error.
lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pyright

# The real-server tests need nginx, redis-server and postgresql (Debian packages; .ci/run
# installs them). Outside CI a missing one skips its tests with the reason; in CI it fails.
# The real-daemon tier (tests/realdocker) is part of it: it needs root, docker.io and debootstrap.
# The tier runs beside the rest of the suite (scripts/run-tests.sh says why); SERIAL=1 runs one
# after the other. Logs: $(OUT)/test-suite.log, $(OUT)/test-docker.log.
test: lint $(CHECKOV_VENV)/.installed
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov SERIAL=$(SERIAL) scripts/run-tests.sh $(PY) $(OUT)

# The real-daemon tier alone (tests/realdocker): its own dockerd (root, docker.io, debootstrap),
# stand-in images built locally and cached, dev/staging/prod applied as pulumi-docker would.
test-docker: $(DEV)
	$(PY) -m pytest tests/realdocker

# The application's own code against what the program generates (tests/appcode): its checkout is
# AIXSSS_APP_DIR (default /work/shared/aixsss-app); built once per source hash under ~/.cache/aixsss-test.
test-app: $(DEV)
	$(PY) -m pytest tests/appcode

# PostgreSQL 15 and pgBackRest from Debian, an S3 server (moto behind nginx TLS) on loopback.
test-backup: $(DEV)
	$(PY) -m pytest tests/backup

# Docker stacks: restore the newest backup of STACK's PostgreSQL into a scratch container on no
# network, check it answers, remove it (scripts/restore-drill.sh; docs/runbooks/backup-restore.md).
restore-drill:
	scripts/restore-drill.sh $(STACK)

render: $(DEV)
	$(PY) -m offline.render --stack $(STACK) --out $(OUT) $(if $(TARGET),--target $(TARGET)) $(if $(SHOW_SECRETS),--show-secrets) $(foreach s,$(SET),--set $(s))

# The base ref is checked out in a temporary git worktree and renders with its own code; this
# checkout renders from the base's render state (offline/audit_diff.py). CI does the same per PR.
audit-diff: $(DEV)
	@test -n "$(BASE)" || { echo "make audit-diff: name the base, e.g. BASE=main" >&2; exit 2; }
	$(PY) -m offline.audit_diff compare --base-ref $(BASE) --out $(OUT)/audit-diff

# nginx and haproxy (Debian's), wrk, h2load (nghttp2-client) and openssl s_time; .ci/run installs
# them. tests/test_bench.py runs the same module for a second per scenario so it cannot rot.
bench: $(DEV)
	$(PY) -m bench --out $(OUT)/bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(POLICY_VENV) .pytest_cache build
