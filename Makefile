# Two entry points: `make demo` (install and upscale a real chest X-ray) and `make test` (install and run the tests).
# Each creates its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

.PHONY: demo test install-test install-demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-demo: $(BIN)/python
	$(BIN)/pip install --quiet -c requirements/ci-constraints.txt -e ".[demo]"

install-test: $(BIN)/python
	scripts/install-system-deps.sh
	$(BIN)/pip install --quiet -c requirements/ci-constraints.txt -e ".[test]"

demo: install-demo
	$(BIN)/python scripts/demo.py --out demo-output --shared $(SHARED)

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
