# runwright: `make run` starts the product, `make test` passes the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test check bench bench-steps bench-triggers bench-targets clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The web UI's front-end libraries come from the npm registry, never from the repository.
install: $(STAMP)
	bash scripts/fetch_assets.sh || echo "The web UI's libraries could not be fetched; pages work without them, with less comfort."

## Start the all-in-one server (SQLite in ~/.runwright, demo task types and jobs) on 127.0.0.1:8080.
run: install
	$(VENV)/bin/runwright server --tasks runwright.demo --demo

## Install test dependencies, start PostgreSQL if it is down, run the whole suite.
test: install
	bash scripts/services.sh
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist worksteal

## Lint, format check and strict typing of src/.
check: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src

bench: install
	bash scripts/services.sh
	$(PY) bench/queue.py

bench-steps: install
	bash scripts/services.sh
	$(PY) bench/steps.py

bench-triggers: install
	bash scripts/services.sh
	$(PY) bench/triggers.py

bench-targets: install
	bash scripts/services.sh
	$(PY) bench/targets.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
