# The two commands of the README: `make train` (set up, then train) and `make test` (set up, then
# run the test suite). ARGS passes options to the trainer: make train ARGS="--method dfc-ssa".
PY := .venv/bin/python
ARGS ?=

.PHONY: setup train test test-slow bench
setup:
	@bash scripts/setup.sh

train: setup
	$(PY) -m dfc_analog.train $(ARGS)

test: setup
	$(PY) -m pytest -m "not slow" -q

test-slow: setup
	$(PY) -m pytest -m slow -q

bench: setup
	$(PY) bench/wake_phase.py
