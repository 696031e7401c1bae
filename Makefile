# make up [STACK=dev]   deploy a stack (needs the Pulumi CLI and Docker or a cluster)
# make test             ruff + the test suite (no Pulumi CLI, Docker or cluster needed)
# make render STACK=prod [TARGET=docker|kubernetes] [SHOW_SECRETS=1] [OUT=build]
#                       what a stack would deploy, as files in $(OUT)/<stack>/ (no Pulumi CLI)
STACK ?= dev
TARGET ?=
OUT ?= build
VENV ?= venv
# checkov pins dependencies that conflict with Pulumi's, so it lives in a venv of its own.
CHECKOV_VENV ?= venv-checkov
PY := $(VENV)/bin/python
# A local file backend unless the caller chose one; state stays beside the project.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state

.PHONY: venv up preview destroy test lint render clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

up: venv
	@test -n "$$PULUMI_CONFIG_PASSPHRASE" -o -n "$$PULUMI_CONFIG_PASSPHRASE_FILE" || \
		{ echo "set PULUMI_CONFIG_PASSPHRASE (or _FILE): it encrypts this stack's secrets"; exit 1; }
	mkdir -p .pulumi-state
	pulumi stack select --create $(STACK)
	pulumi up --stack $(STACK)

preview: venv
	mkdir -p .pulumi-state
	pulumi stack select --create $(STACK)
	pulumi preview --stack $(STACK)

lint: venv
	$(VENV)/bin/ruff check .

# The real-server tests need nginx, redis-server and postgresql (Debian packages; .ci/run
# installs them). Outside CI a missing one skips its tests with the reason; in CI it fails.
test: lint $(CHECKOV_VENV)/.installed
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest

render: venv
	$(PY) -m offline.render --stack $(STACK) --out $(OUT) $(if $(TARGET),--target $(TARGET)) $(if $(SHOW_SECRETS),--show-secrets)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache build
