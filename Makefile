# Two commands on a fresh machine: `make run` (the studio) and `make test` (the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean constraints test-min

install: $(VENV)/.installed

# constraints.txt pins the versions the tests passed with (make constraints rewrites it).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,tuning]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt \
		"onnx2torch>=1.5.15,<1.6"
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

# After a dependency change in pyproject.toml, with the tests passing in $(VENV):
constraints: install
	$(PY) scripts/constraints.py > constraints.txt
	$(PY) scripts/constraints.py --min > constraints-min.txt

# The lowest declared versions, in a venv of their own, on a smoke subset of the tests.
# Not part of `make test` / CI (installing a second environment exceeds the CI budget).
MIN_VENV ?= .venv-min
SMOKE ?= tests/test_foundation.py tests/test_measure_verdict.py tests/test_distillation_loss.py \
	tests/test_pruning_criteria.py
# The CPU index: the oldest torch exists on PyPI only as a CUDA build (~3 GB with its wheels).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
test-min:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --disable-pip-version-check \
		--extra-index-url $(TORCH_CPU_INDEX) -c constraints-min.txt -e ".[dev,tuning]"
	$(MIN_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps \
		-c constraints-min.txt "onnx2torch>=1.5.15,<1.6"
	$(MIN_VENV)/bin/python -m pytest -q $(SMOKE)

clean:
	rm -rf $(VENV) $(MIN_VENV) results
