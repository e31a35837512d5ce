# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make demo   run the main job on embedded defaults
#   make test   lint, type-check and run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed


.PHONY: venv shop-deps demo test lint typecheck unit bench schemas docs deploy clean

venv: $(STAMP)

# Python 3.11+ with its venv module (Debian splits it out as python3-venv): one line if not.
PREREQS := $(VENV)/.prereqs

$(PREREQS):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.11+ (Debian: sudo apt-get install python3 python3-venv)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $$($(PYTHON) --version 2>&1) is too old: kpistream needs Python 3.11+ (or run make PYTHON=python3.11)"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "make: the Python venv module is missing: sudo apt-get install python3-venv (Debian, Ubuntu)"; exit 1; }
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml | $(PREREQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The official Plausible and Snowplow trackers for the demo shop and the browser tests, at
# the versions pinned in kpistream/collector/shop/package-lock.json (skipped without npm).
SHOP_MODULES := kpistream/collector/shop/node_modules/.package-lock.json

shop-deps: $(SHOP_MODULES)

$(SHOP_MODULES): kpistream/collector/shop/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --silent --no-audit --no-fund --prefix kpistream/collector/shop; \
	else echo "npm not found: the demo shop serves kpistream.js only"; fi

demo: venv shop-deps
	$(BIN)/kpistream demo $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check kpistream tests bench
	$(BIN)/lint-imports --no-cache

typecheck: venv
	$(BIN)/mypy

# -rs: the skipped tests and why (a system binary missing; see the README's quick start).
test: lint typecheck shop-deps
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -q tests/unit

# The peers of the benchmark (Bytewax, Quix Streams) in an environment of their own.
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed

$(PEERS_STAMP): bench/peers/requirements.txt
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	@touch $(PEERS_STAMP)

bench: venv $(PEERS_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

schemas: venv
	$(BIN)/python -m kpistream.schemas.generate

docs: venv
	$(BIN)/python -m kpistream.docs

# Alert rules and Grafana dashboards from the example goals (defaults, not this shell's env).
deploy: venv
	env -u KPISTREAM_WINDOWS -u KPISTREAM_LONG_WINDOW_DAYS $(BIN)/kpistream rules deploy/goals.example.yml -o deploy/prometheus/rules/kpistream.rules.yml
	env -u KPISTREAM_WINDOWS -u KPISTREAM_LONG_WINDOW_DAYS $(BIN)/kpistream dashboards deploy/goals.example.yml -o deploy/grafana/dashboards

clean:
	rm -rf $(VENV) $(PEERS) *.egg-info .pytest_cache .mypy_cache .ruff_cache
