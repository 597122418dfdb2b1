# CallMeter: `make run` starts the platform, `make test` passes every test.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell md5sum pyproject.toml | cut -c1-8)
# System packages the real-peer and browser tests use (installed when we can).
SYSTEM_PACKAGES := kamailio kamailio-extra-modules sip-tester chromium curl tshark iproute2

.PHONY: run test lint fmt bench system-deps build-deps clean

# `pesq` (ITU-T P.862) is published only as source: pip compiles it with gcc against
# the interpreter's headers (Python.h).
build-deps:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev $$(basename $(PYTHON))-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) \
	      || echo "could not install:$$missing (pip cannot build pesq)"; \
	  else echo "not installing:$$missing (need root and apt-get); pip cannot build pesq"; fi; \
	fi

$(STAMP): pyproject.toml | build-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

run: $(STAMP)
	$(VENV)/bin/callmeter up

system-deps:
	@missing=""; \
	command -v kamailio >/dev/null || missing="$$missing kamailio kamailio-extra-modules"; \
	dpkg -s kamailio-tls-modules >/dev/null 2>&1 || missing="$$missing kamailio-tls-modules"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v sipp >/dev/null || missing="$$missing sip-tester"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	dpkg -s libspandsp2 >/dev/null 2>&1 || missing="$$missing libspandsp2"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null)) \
	      || echo "could not install:$$missing (tests needing them will skip)"; \
	  else echo "not installing:$$missing (need root and apt-get); tests needing them will skip"; fi; \
	fi

test: $(STAMP) system-deps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services/api services/scheduler services/dispatcher

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
