# Two commands on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   the main job end to end, on embedded defaults
#   make test   the whole suite: ruff, mypy, pytest (installs what it needs)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Tests that need PostgreSQL fail instead of skipping when this machine could install it.
REQUIRE_SYSTEM_PACKAGES := $(shell [ "$$(id -u)" = 0 ] && echo 1 || echo 0)

.PHONY: demo test lint typecheck pytest venv system-packages bench screenshots clean

demo: venv system-packages
	$(BIN)/python scripts/demo.py

test: venv system-packages lint typecheck pytest

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "cannot create a venv: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-packages:
	@scripts/install-system-packages.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	MYPY=$(CURDIR)/$(BIN)/mypy scripts/typecheck.sh

pytest: venv
	BREV_REQUIRE_SYSTEM_PACKAGES=$(REQUIRE_SYSTEM_PACKAGES) $(BIN)/pytest -n 2 --durations=15

bench: venv
	$(BIN)/python bench/cli_startup.py

# The dashboard's browser tests, keeping a screenshot of every page for docs/dashboard.md.
screenshots: venv system-packages
	BREV_DASHBOARD_SCREENSHOTS=$(CURDIR)/docs/dashboard $(BIN)/pytest -q \
		tests/test_dashboard.py tests/test_dashboard_instances.py tests/test_dashboard_create.py \
		tests/test_dashboard_nodes.py tests/test_dashboard_org.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
