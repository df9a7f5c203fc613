# shelfscan — one entry point for developers and CI. `make test` works on a fresh machine:
# it creates the venv, installs what the tests need (Mosquitto via apt-get when root), then tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py edge/_resample.c | cksum | cut -d" " -f1)
PYTEST_ARGS ?=

.PHONY: setup test lint bench clean system-deps

setup: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[edge,train,dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Mosquitto is what the agent tests talk to; install it when we may and it is missing.
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing mosquitto (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "warning: mosquitto not found and not root: MQTT tests will fail in CI"; fi; \
	fi

test: setup system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
