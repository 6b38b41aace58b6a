# Two commands for a newcomer: `make serve` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
MODEL_NAME ?= agbento-demo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-spark demo-model serve test test-deps lint docs docs-serve build image bench bench-full soak bench-deps loadtest-deps peers-deps bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# pyspark is large (about 450 MB): only the tests and Spark users need it.
$(VENV)/.installed-spark: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $@

install-spark: $(VENV)/.installed-spark

# Train the demo model into the local model store only if there is none yet.
demo-model: install
	@$(BIN)/bentoml models get $(MODEL_NAME):latest >/dev/null 2>&1 \
		|| $(BIN)/agbento train --demo --name $(MODEL_NAME)

serve: demo-model
	$(BIN)/agbento serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .

# The documentation site (mkdocs-material, in the dev extra): strict, so a broken link, a
# broken anchor or a page missing from the nav fails. Its examples run in
# tests/test_docs_examples.py.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# Real tools the tests run: redis-server (cache, shared rate limit); promtool and amtool
# (alert rules, routing); prometheus and alertmanager (alert delivery, end to end; Debian
# names the alertmanager binary prometheus-alertmanager); java (Spark).
TEST_TOOLS := redis-server:redis-server promtool:prometheus amtool:prometheus-alertmanager \
	prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
	java:openjdk-17-jre-headless
test-deps:
	@missing=""; for pair in $(TEST_TOOLS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

test: install install-spark lint docs test-deps
	$(BIN)/python -m pytest

# wrk drives the benchmark (closed loop); gcc builds loadtests/openloop.c (open loop, issue
# 27); both from the distribution's packages (Debian/Ubuntu).
LOADTEST_TOOLS := wrk:wrk gcc:gcc
loadtest-deps:
	@missing=""; for pair in $(LOADTEST_TOOLS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

bench-deps: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'

# The peers' venvs (KServe, MLServer, Ray Serve), each beside this
# venv's AutoGluon, under loadtests/.peers/; bench.py --peers makes any that is missing.
peers-deps: bench-deps
	$(BIN)/python -m loadtests.peers.venvs kserve mlserver ray

# agbento against the other servers on the same predictor, closed and open loop.
bench-peers: demo-model loadtest-deps peers-deps
	$(BIN)/python loadtests/bench.py --models penguins --peers --open-loop --name peers

bench: demo-model loadtest-deps bench-deps
	$(BIN)/python loadtests/bench.py --quick

# Both models (the birdstrikes one is trained when missing), about 20 minutes.
bench-full: demo-model loadtest-deps bench-deps
	$(BIN)/python loadtests/bench.py

# 20 minutes at 64 clients on distinct rows, cache off: memory and p99 over time.
SOAK_MINUTES ?= 20
soak: demo-model loadtest-deps bench-deps
	$(BIN)/python loadtests/soak.py --minutes $(SOAK_MINUTES)

build: demo-model
	$(BIN)/bentoml build .

# The OCI image without a Docker engine (root; debootstrap, buildah, podman). See deploy/image.sh.
image: install
	bash deploy/image.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
