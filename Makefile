# Two commands on a fresh machine: `make run` (the studio) and `make test` (the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run test lint bench clean constraints test-min test-flower

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
	test ! -x $(MIN_VENV)/bin/python || $(MIN_VENV)/bin/python scripts/constraints.py --min \
		> constraints-min.txt
	test ! -x $(FLOWER_VENV)/bin/python || { echo "# The versions make test-flower passed with."; \
		$(FLOWER_VENV)/bin/python -m pip freeze --exclude-editable; } > constraints-flower.txt

# The lowest declared versions of the runtime dependencies (and pytest), in a venv of their own,
# on a smoke subset of the tests. CI runs it after `make test` (.ci/run). constraints-min.txt pins
# the floors and what they pulled in (make constraints), so pip resolves nothing; --no-compile:
# Python compiles only the modules the tests import (pip would compile all of torch's).
MIN_VENV ?= .venv-min
SMOKE ?= tests/test_foundation.py tests/test_measure_verdict.py tests/test_distillation_loss.py \
	tests/test_pruning_criteria.py
# the CLI test's seven subprocesses are the smoke set's slowest part; the main suite runs it
SMOKE_ARGS ?= -k "not test_cli_train_benchmark_and_exit_codes"
# torch: PyPI's Linux wheels are CUDA builds (~3 GB with their nvidia-* wheels), so the min venv
# takes torch's +cpu build: MIN_TORCH, from the machine's local wheels (this project's machines
# reach PyPI only and carry torch 2.13.0+cpu) or from TORCH_CPU_INDEX where that index is
# reachable (make test-min MIN_TORCH=2.11.0+cpu TORCH_CPU_INDEX=<the PyTorch CPU wheel index>).
MIN_TORCH ?= 2.13.0+cpu
TORCH_CPU_INDEX ?=
MIN_PIP = $(MIN_VENV)/bin/python -m pip install -q --no-compile --disable-pip-version-check \
	$(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX)) -c $(MIN_VENV)/constraints.txt
test-min:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	{ grep -v '^torch==' constraints-min.txt; echo "torch==$(MIN_TORCH)"; } \
		> $(MIN_VENV)/constraints.txt
	$(MIN_PIP) -e . pytest
	$(MIN_VENV)/bin/python -m pytest $(SMOKE) $(SMOKE_ARGS)

# The Flower engine (extra `flower`) in an environment of its own: flwr pins fastapi, starlette,
# uvicorn and typer to narrow ranges below constraints.txt's (and protobuf < 7). Only what the
# federated engine needs (torch CPU, numpy, psutil, flwr with Ray); the project comes from the
# work tree (pyproject's pytest pythonpath), not installed. constraints-flower.txt pins the
# versions it passed with (torch's +cpu build: never CUDA). CI runs it after test-min; its tests
# start Ray once (one simulation compared with the vectorized engine).
FLOWER_VENV ?= .venv-flower
test-flower:
	test -x $(FLOWER_VENV)/bin/python || python3 -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install -q --no-compile --disable-pip-version-check \
		-c constraints-flower.txt "flwr[simulation]>=1.22,<2" torch numpy psutil pytest
	$(FLOWER_VENV)/bin/python -m pytest tests/test_federated_flower.py

clean:
	rm -rf $(VENV) $(MIN_VENV) $(FLOWER_VENV) results
