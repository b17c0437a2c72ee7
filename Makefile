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
	$(PY) scripts/constraints.py --min > constraints-min.txt
	test ! -x $(FLOWER_VENV)/bin/python || { echo "# The versions make test-flower passed with."; \
		$(FLOWER_VENV)/bin/python -m pip freeze --exclude-editable; } > constraints-flower.txt

# The lowest declared versions, in a venv of their own, on a smoke subset of the tests.
# Not part of `make test` / CI: installing it took ~25 min on this shared 2-core machine, and its
# smoke tests 9 min more (CI's budget for extra steps: 3 min).
MIN_VENV ?= .venv-min
SMOKE ?= tests/test_foundation.py tests/test_measure_verdict.py tests/test_distillation_loss.py \
	tests/test_pruning_criteria.py
# torch: PyPI's Linux wheels are CUDA builds (~3 GB with their nvidia-* wheels), so the min venv
# takes torch's +cpu build: MIN_TORCH, from the machine's local wheels (this project's machines
# reach PyPI only and carry torch 2.13.0+cpu) or from TORCH_CPU_INDEX where that index is
# reachable (make test-min MIN_TORCH=2.11.0+cpu TORCH_CPU_INDEX=<the PyTorch CPU wheel index>).
MIN_TORCH ?= 2.13.0+cpu
TORCH_CPU_INDEX ?=
MIN_PIP = $(MIN_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	$(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX)) -c $(MIN_VENV)/constraints.txt
test-min:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	{ grep -v '^torch==' constraints-min.txt; echo "torch==$(MIN_TORCH)"; } \
		> $(MIN_VENV)/constraints.txt
	$(MIN_PIP) -e ".[dev,tuning]"
	$(MIN_PIP) --no-deps "onnx2torch>=1.5.15,<1.6"
	$(MIN_VENV)/bin/python -m pytest $(SMOKE)

# The Flower engine (extra `flower`) in an environment of its own: flwr pins protobuf < 7, below
# constraints.txt's. Only what the federated engine needs (torch CPU, numpy, psutil, flwr with
# Ray); the project comes from the work tree (pyproject's pytest pythonpath), not installed.
# constraints-flower.txt pins the versions it passed with (torch's +cpu build: never CUDA).
# Not part of `make test` / CI: the install took 6.5-20 min here (machine load), the tests ~6 min
# (each Ray simulation starts its own cluster).
FLOWER_VENV ?= .venv-flower
test-flower:
	test -x $(FLOWER_VENV)/bin/python || python3 -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install -q --disable-pip-version-check \
		-c constraints-flower.txt "flwr[simulation]>=1.22,<2" torch numpy psutil pytest
	$(FLOWER_VENV)/bin/python -m pytest tests/test_federated_flower.py

clean:
	rm -rf $(VENV) $(MIN_VENV) $(FLOWER_VENV) results
