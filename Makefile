# make setup       create .venv and install everything pinned (fast when nothing changed)
# make test        setup + the test suite
# make quickstart  setup + the whole PMG-AFT story on a CPU in minutes
# make bench       setup + `pmgaft bench`: training steps, PGD, clean eval; time, FLOPs, MFU, memory (ARGS=...)
# make gpu-check   setup + `pmgaft gpu-check`: on one CUDA GPU in minutes, bf16 vs fp32, bench, compile, torchrun
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pmgaft-installed
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: setup test quickstart bench gpu-check clean
setup: $(STAMP)

$(STAMP): pyproject.toml requirements-pinned.txt requirements-nodeps.txt
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-pinned.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# Fashion-MNIST's real images (IDX files) from Debian; optional, the quickstart explains if missing.
	@test -d /usr/share/datasets/fashion-mnist || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "note: dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)"; }
	@touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) $(ARGS)

quickstart: setup
	$(VENV)/bin/pmgaft quickstart $(ARGS)

bench: setup
	$(VENV)/bin/pmgaft bench $(ARGS)

gpu-check: setup
	$(VENV)/bin/pmgaft gpu-check $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
