# Two entry points for a new user: `make demo` and `make test`.
# Both create .venv themselves from requirements.txt (pinned) using uv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9

export PYTHONPATH := $(CURDIR)/plugins
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

.PHONY: install lint format test test-cluster demo simulator bench lock clean chromium

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .

# The browser check (tests/data/test_pages_in_chromium.py) opens the HTML pages in Debian's
# chromium package: installed here when missing and we are root, else we say how (the
# tests skip, saying so, without it). SMS_CHROMIUM names another executable.
CHROMIUM ?= $(or $(SMS_CHROMIUM),/usr/bin/chromium)

chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser check"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "no $(CHROMIUM): the browser check will be skipped;" \
		     "install it with: sudo apt-get install -y chromium"; \
	fi

test: install lint chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the distributed deployment on loopback: Celery workers on PostgreSQL and Redis
# (both must run on 127.0.0.1; the test says how to get them otherwise)
test-cluster: install
	$(BIN)/python -m pytest -m cluster tests/cluster -q

demo: install
	$(BIN)/python include/demo.py

simulator: install
	$(BIN)/python -m sms_provider.simulator --config include/simulator.json --port 18080

bench: install
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lock: install
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf $(VENV) .airflow data .pytest_cache .ruff_cache
