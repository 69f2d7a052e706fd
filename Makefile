# Entry points. `make demo` and `make test` are the two commands README gives a newcomer.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export CONTAINERS_CONF := $(abspath sim/containers.conf)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)

.PHONY: setup lock example fleet demo test lint unit integration molecule bench bench-fleet clean

setup:
	bash scripts/setup.sh

# Re-resolve every lock under requirements/ (controller, oldest ansible-core, each robot platform)
# from the .in files and python/pyproject.toml; review the diff and commit it.
lock: setup
	bash scripts/lock.sh

example: setup examples/build/mlp/policy.onnx

# Built once; delete examples/build/ to rebuild (a new build is a new release).
examples/build/mlp/policy.onnx:
	$(VENV)/bin/jetpolicy example --out examples/build/mlp

fleet: setup
	$(PY) sim/fleet.py up

demo: example fleet
	$(VENV)/bin/ansible-playbook deploy.yml -l orin_robots

test: setup
	bash scripts/test.sh

bench: setup
	$(PY) bench/runner_vs_naive.py

# Replaces the sim fleet with ROBOTS fresh robots; `make fleet` brings the test fleet back.
ROBOTS ?= 20
bench-fleet: setup
	$(PY) bench/fleet_scale.py --robots $(ROBOTS) --json reports/bench/fleet-$(ROBOTS).json

clean:
	$(PY) sim/fleet.py down || true
