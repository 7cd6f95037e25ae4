# Uptake — the two commands a newcomer needs:
#   make demo   the whole pipeline once on the embedded warehouse (broker, migrate, simulate, worker)
#   make test   lint, type-check and the full test suite (starts the services it needs)

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-latest lock lint unit reliability bench bench-collector soak broker-start broker-stop clean help system-deps dashboards
.DEFAULT_GOAL := help

help:
	@echo "make demo    run the whole pipeline once and print a per-team adoption summary"
	@echo "make test    ruff + mypy + the whole test suite (real Kafka, real ClickHouse engine)"
	@echo "make unit    only the tests that need no services"
	@echo "make reliability  the fault suite with soak-sized iteration counts"
	@echo "make bench   uptake bench: pipeline throughput vs a raw baseline, one JSON line"
	@echo "make bench-collector  the collector under hey: requests/s, p99, coalescing on vs off"
	@echo "make soak    uptake soak: 5 min at 80 % of the calibrated throughput, a 10x burst, a verdict"
	@echo "make lint    ruff, mypy and the layer contract (import-linter)"
	@echo "make lock    update uv.lock to the newest releases in pyproject.toml's ranges (on purpose)"
	@echo "make test-latest  the suite against the newest releases, in .venv-latest (the lock untouched)"
	@echo "make dashboards  regenerate dashboards/*.json from pipeline/dashboards/"
	@echo "make clean   remove the virtualenv and local state (.uptake/)"

# Installs exactly uv.lock (every package, transitive ones included, with hashes): first uv
# itself, pinned with hashes in requirements/uv.txt, then `uv sync --locked`, which refuses a
# lock that does not match pyproject.toml instead of resolving anew, and removes what the lock
# does not list.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(BIN)/uv: requirements/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11 or newer is needed ($(PYTHON) is $$($(PYTHON) --version 2>&1)); make PYTHON=python3.12 ..."; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements/uv.txt; \
	else $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/uv.txt; fi
	@touch $(BIN)/uv

$(STAMP): pyproject.toml uv.lock $(BIN)/uv
	@command -v java >/dev/null || { echo "error: java (17+) is needed for the local Kafka broker: apt-get install openjdk-17-jre-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn is needed to fetch Kafka's jars from Maven Central: apt-get install maven"; exit 1; }
	$(BIN)/uv sync --quiet --locked --extra dev --python $(BIN)/python
	@touch $(STAMP)

# Update the lock on purpose (its own commit, with the suite run): newest releases within
# pyproject.toml's ranges, and the hash-pinned uv that installs it.
lock: $(BIN)/uv
	$(BIN)/uv lock --upgrade --python $(BIN)/python
	$(BIN)/uv pip compile --quiet --universal --generate-hashes --no-header --python-version 3.11 \
	  --output-file requirements/uv.txt - <<< "uv==$$($(BIN)/uv export --frozen --extra dev --no-hashes --no-emit-project | sed -n 's/^uv==\([^ ;]*\).*/\1/p')"
	@echo "uv.lock updated: run make test, then commit uv.lock and requirements/uv.txt on their own"

# The suite against the newest releases (a throwaway virtualenv, the lock untouched): drift is
# seen here before a lock update, not by a new user.
LATEST := .venv-latest
test-latest: $(STAMP) system-deps
	rm -rf $(LATEST)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(LATEST)
	$(BIN)/uv pip install --quiet --python $(LATEST)/bin/python --upgrade --resolution highest -e ./sdk -e '.[dev]'
	$(BIN)/uv pip list --python $(LATEST)/bin/python --format freeze > $(LATEST)/versions.txt
	@echo "newest releases: $(LATEST)/versions.txt"
	$(LATEST)/bin/ruff check pipeline tests sdk
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest -q

demo: $(STAMP)
	$(BIN)/uptake demo

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests sdk
	$(BIN)/ruff format --check pipeline sdk
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# promtool and a Prometheus server for tests/integration/observability and tests/reliability (Debian's prometheus package).
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool and a Prometheus server for the tests)"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; \
	} || { \
	  echo "error: could not install the 'prometheus' package (promtool, prometheus) with apt-get;"; \
	  echo "       install it yourself (Debian/Ubuntu: apt-get install prometheus) and run make test again"; \
	  exit 1; \
	}
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium package (headless browser for the uptake report test)"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; \
	} || { \
	  echo "error: could not install the 'chromium' package with apt-get;"; \
	  echo "       install it yourself (Debian: apt-get install chromium) and run make test again"; \
	  exit 1; \
	}

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -q

# The reliability suite with soak-sized iteration counts (make test runs it CI-sized).
reliability: $(STAMP)
	UPTAKE_RELIABILITY_KILLS=$${UPTAKE_RELIABILITY_KILLS:-60} $(BIN)/python -m pytest -q -s -m reliability

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

dashboards: $(STAMP)
	$(BIN)/uptake dashboards generate

bench: $(STAMP)
	$(BIN)/uptake broker start
	$(BIN)/uptake bench

# hey (built into .uptake/tools if missing) against `uptake collector`; docs/benchmarks.md.
bench-collector: $(STAMP)
	$(BIN)/uptake broker start
	$(BIN)/python -m pipeline.devtools.bench_collector

# Sustained load, RSS and lag samples, a burst, lost/double counted (docs/reliability.md).
# UPTAKE_SOAK_DURATION=30m make soak for a longer one.
soak: $(STAMP)
	$(BIN)/uptake broker start
	$(BIN)/uptake soak --duration $${UPTAKE_SOAK_DURATION:-5m} --sample-every 10

broker-start: $(STAMP)
	$(BIN)/uptake broker start

broker-stop: $(STAMP)
	$(BIN)/uptake broker stop

clean:
	-$(BIN)/uptake broker stop 2>/dev/null
	rm -rf $(VENV) $(LATEST) .uptake
