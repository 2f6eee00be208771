# Two entry points: `make demo` (install and upscale a real chest X-ray) and `make test` (install and run the tests).
# Each creates its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

.PHONY: demo test fuzz reliability install-test install-demo clean

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

# A longer fuzzing run than the tests' (FUZZ_EXAMPLES per seed file, random each time), and the hostile-input table.
FUZZ_EXAMPLES ?= 20000
fuzz: install-test
	CXRSR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

reliability: install-test
	$(BIN)/python benchmarks/reliability.py --shared $(SHARED) --json benchmarks/results/reliability.json

clean:
	rm -rf $(VENV) demo-output .pytest_cache
