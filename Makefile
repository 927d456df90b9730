# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv, installs torch==2.13.0 first (the local CPU wheel; a looser pin would pull
# gigabytes of CUDA), then the project, and - when run as root - Debian's Fashion-MNIST package.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-all install data clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

data:
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (or make as root)"; exit 1; \
	  fi; \
	fi

demo: install data
	$(BIN)/nanofactory demo

test: install data
	$(BIN)/python -m pytest -q

test-all: install data
	$(BIN)/pip install --quiet -e '.[test,llm]'
	$(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV) runs .pytest_cache
