# shelfscan — one entry point for developers and CI. `make test` works on a fresh machine:
# it creates the venv, installs what the tests need (Mosquitto via apt-get when root), then tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py edge/__init__.py edge/_*.c | cksum | cut -d" " -f1)
PYTEST_ARGS ?=

.PHONY: setup test lint bench demo clean system-deps check-arm64

setup: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[edge,train,dev,demo]'
	rm -f $(VENV)/.installed-* && touch $@

# Mosquitto (the agent tests' broker), systemd-analyze (unit file checks) and Chromium (the live
# page's headless-browser test): installed when we may (root with apt-get) and they are missing.
SYSTEM_PKGS = mosquitto:/usr/sbin/mosquitto systemd:/usr/bin/systemd-analyze chromium:/usr/bin/chromium
system-deps:
	@missing=""; for pair in $(SYSTEM_PKGS); do pkg=$${pair%%:*}; bin=$${pair#*:}; \
	  [ -x "$$bin" ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing$$missing and not root: their tests will fail in CI"; fi; \
	fi

test: setup system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The whole pipeline offline: generated data (DATA=dir for a real set), InceptionV3 (WEIGHTS=path,
# BACKBONE=, INPUT_SIZE=), int8 bundle, shelf video, embedded broker (MQTT_URL= for yours), agent.
demo: setup
	$(PY) -m demo

bench: setup system-deps
	$(PY) -m benchmarks.run

# edge/ on aarch64 (the Raspberry Pi) under QEMU user mode: tests, classify and preprocessing compared
# with x86, bench and run smoke runs (docs/arm64.md). Root with apt-get the first time (qemu, cross gcc).
check-arm64: setup system-deps
	scripts/check-arm64.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
