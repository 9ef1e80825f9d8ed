# The two commands: `make run` starts the whole stack, `make test` runs every test.
.PHONY: run test demo bench lint setup contracts

PYTHON := .venv/bin/python
PYTEST_ARGS ?= -n 2 --dist loadfile -q

setup:
	@bash scripts/bootstrap.sh

run: setup
	@$(PYTHON) scripts/devstack.py run

test: setup
	@$(PYTHON) scripts/devstack.py test $(PYTEST_ARGS)

demo: setup
	@$(PYTHON) scripts/demo.py

bench: setup
	@$(PYTHON) bench/downloads.py

# Rewrite docs/openapi.json and docs/asyncapi.json from the code.
contracts: setup
	@$(PYTHON) scripts/contracts.py

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy libs services
