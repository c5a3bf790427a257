# `make test` and `make demo` work on a fresh machine: they create .venv and
# install what they need (see tools/need_system.sh for system packages).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements-dev.txt | cut -d' ' -f1)
JOBS ?= 4
# MicroPython 1.23, the release OpenWRT ships, as its WebAssembly port.
MPY123_PKG := @micropython/micropython-webassembly-pyscript@1.23.0
MPY123 := $(VENV)/mpy123/.installed-1.23.0

.PHONY: test lint deps system-deps build package demo bench clean

test: deps lint
	$(VENV)/bin/pytest -n $(JOBS) tests_cpython

deps: $(STAMP) system-deps $(MPY123)

$(STAMP): requirements-dev.txt
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11) and "python3 3.11 or newer is needed")'
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	@sh tools/need_system.sh

$(MPY123): | $(STAMP) system-deps
	npm install --prefix $(VENV)/mpy123 --no-audit --no-fund --silent $(MPY123_PKG)
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

build: $(STAMP)
	sh tools/build_mpy.sh

# dist/socketman_<version>-<release>_all.ipk and dist/socketman-<version>-r<release>.apk
RELEASE ?= 1
MPY_VERSION ?= 1.23
package: $(STAMP)
	$(PY) tools/package.py --release $(RELEASE) --micropython $(MPY_VERSION)

demo: deps
	$(PY) tools/demo.py

bench: deps
	$(PY) bench/mqtt_bench.py
	$(PY) bench/stats_bench.py
	$(PY) bench/json_bench.py
	$(VENV)/bin/micropython bench/json_bench.py

clean:
	rm -rf dist .pytest_cache .ruff_cache
