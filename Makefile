# Two commands on a fresh machine: `make run` (the studio) and `make test` (the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,tuning]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "onnx2torch>=1.5.15,<1.6"
	touch $@

run: install
	$(PY) launch.py

test: install
	bash scripts/system-deps.sh
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) results
