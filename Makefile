# One command each, on a fresh machine: `make demo` and `make test` set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint bench clean

setup:
	bash launch/setup_venv.sh $(VENV)

demo: setup
	$(PY) -m tinylora_verl.demo

test: setup
	$(PY) -m pytest tests --durations=25

test-fast: setup
	$(PY) -m pytest tests -m "not e2e and not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/adapter.py

clean:
	rm -rf $(VENV) .pytest_cache
