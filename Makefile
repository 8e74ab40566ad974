# pxelab: `make demo` boots a VM from pxelab; `make test` runs every test. Both set up first.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup install serve demo test unit lint format clean bench fuzz golden docs

setup:
	@scripts/setup.sh

PREFIX ?= /opt/pxelab
install:  ## pxelab into its own virtualenv, $(PREFIX) (Debian's Python refuses system-wide pip installs)
	python3 -m venv $(PREFIX)
	$(PREFIX)/bin/pip install .

serve: setup  ## serve with configs/pxelab.toml (edit it first)
	$(PY) -m pxelab serve --config configs/pxelab.toml

demo: setup  ## a private namespace, pxelab, and a QEMU UEFI VM that boots from it
	$(PY) -m pxelab demo

test: setup  ## everything: unit, integration (namespaces) and QEMU end-to-end tests
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup  ## tests/unit: pure tests (no root, no subprocess, no network namespace, no VM)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup  ## every scenario against dnsmasq, nginx and atftpd; writes docs/BENCHMARKS.md (root; not a test)
	$(PY) bench/run.py $(BENCH_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .venv build dist .mypy_cache .ruff_cache .pytest_cache

FUZZ_RUNS ?= 500000
fuzz: setup  ## atheris on the DHCP, DHCPv6 and TFTP cores: FUZZ_RUNS inputs each (1,500,000 in all)
	PYTHONPATH=. $(PY) fuzz/run.py dhcp -runs=$(FUZZ_RUNS)
	PYTHONPATH=. $(PY) fuzz/run.py dhcp6 -runs=$(FUZZ_RUNS)
	PYTHONPATH=. $(PY) fuzz/run.py tftp -runs=$(FUZZ_RUNS)

golden: setup  ## rewrite tests/unit/golden/ from the templates (review the diff; the tests only compare)
	PYTHONPATH=. $(PY) -m tests.unit.test_render_golden

docs: setup  ## renew docs/status.png: the status page test, its screenshot kept (tests write none)
	PXELAB_STATUS_SCREENSHOT=$(CURDIR)/docs/status.png $(PY) -m pytest tests/e2e/test_status_browser.py
