# make up [STACK=dev]   deploy a stack (needs the Pulumi CLI and Docker or a cluster)
# make test             ruff + the test suite (no Pulumi CLI, Docker or cluster needed)
STACK ?= dev
VENV ?= venv
PY := $(VENV)/bin/python
# A local file backend unless the caller chose one; state stays beside the project.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state

.PHONY: venv up preview destroy test lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

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

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build
