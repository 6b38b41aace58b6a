# Two commands for a newcomer: `make serve` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
MODEL_NAME ?= agbento-demo

.PHONY: install demo-model serve test lint build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Train the demo model into the local model store only if there is none yet.
demo-model: install
	@$(BIN)/bentoml models get $(MODEL_NAME):latest >/dev/null 2>&1 \
		|| $(BIN)/python train.py --demo --name $(MODEL_NAME)

serve: demo-model
	$(BIN)/bentoml serve . --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest

build: demo-model
	$(BIN)/bentoml build .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
