# `make test` and `make demo` work on a fresh machine: they create .venv and
# install what they need (see tools/need_system.sh for system packages).
VENV := .venv
PY := $(VENV)/bin/python
# The agent's test tools and the reference fleet server (server/) share .venv.
REQS := requirements-dev.txt server/requirements.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQS) | cksum | cut -d' ' -f1)
# Most tests wait on processes and sockets, not the CPU: 6 workers on 2 cores.
JOBS ?= 6

.PHONY: test lint deps system-deps runtimes build package demo bench bench-fleet clean

test: deps lint runtimes
	$(VENV)/bin/pytest -n $(JOBS) tests_cpython

deps: $(STAMP) system-deps

# The native MicroPython 1.23, 1.28, 1.23-MIPS and apk-tools binaries, from
# $SOCKETMAN_MPY_1_23 & co. or ../shared/bin: says which is missing and how
# to build it.
runtimes: $(STAMP)
	@$(PY) tests_cpython/helpers/runtimes.py

$(STAMP): $(REQS)
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11) and "python3 3.11 or newer is needed")'
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -r server/requirements.txt
	rm -f $(VENV)/.installed-*
	ln -sf ../../server/socketman-server $(VENV)/bin/socketman-server
	touch $@

system-deps:
	@sh tools/need_system.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

build: $(STAMP)
	sh tools/build_mpy.sh

# dist/socketman_<version>-<release>_all.ipk, dist/socketman-<version>-r<release>.apk and the update
# archive dist/socketman-<version>.tar.gz (PROTOCOL 10) with its .sha256
RELEASE ?= 1
MPY_VERSION ?= 1.23
package: $(STAMP)
	$(PY) tools/package.py --release $(RELEASE) --micropython $(MPY_VERSION)

demo: deps
	$(PY) tools/demo.py

# The router footprint table first (issues 16 and 21: about 30 minutes; add another
# agent beside SocketMan with BENCH_OTHER='--other NAME=COMMAND').
bench: deps
	mkdir -p dist
	$(PY) bench/footprint.py --json dist/footprint.json --markdown dist/footprint.md $(BENCH_OTHER)
	$(PY) bench/mqtt_bench.py
	$(PY) bench/stats_bench.py
	$(PY) bench/json_bench.py
	$(VENV)/bin/micropython bench/json_bench.py
	$(PY) bench/tunnel_bench.py --json dist/tunnel.json
	$(PY) bench/update_bench.py --json dist/update.json
	$(MAKE) bench-fleet

# Fleet scale (issue 13): 100 agents, then FLEET_N (the largest the machine
# holds; fleet.py refuses, and says why, an N it cannot). About 3 minutes each
# (N = 100 took 2 min 40 s), more when the machine cannot keep up.
FLEET_N ?= 1000
bench-fleet: deps
	mkdir -p dist
	$(PY) bench/fleet.py --agents 100 --json dist/fleet-100.json
	$(PY) bench/fleet.py --agents $(FLEET_N) --json dist/fleet-$(FLEET_N).json
	# The reference server at fleet scale (issue 25): one server process,
	# then two sharing the MQTT events; 10 + 5 minutes of steady work.
	$(PY) bench/fleet_server.py --agents $(FLEET_N) --json dist/fleet-server-$(FLEET_N).json
	$(PY) bench/fleet_server.py --agents $(FLEET_N) --servers 2 --minutes 5 --json dist/fleet-server-$(FLEET_N)-2.json

clean:
	rm -rf dist .pytest_cache .ruff_cache
