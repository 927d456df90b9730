# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv, installs torch==2.13.0 first (the local CPU wheel; a looser pin would pull
# gigabytes of CUDA), then the project, and - when run as root - Debian's Fashion-MNIST package.
# No pip cache: a fresh machine never reuses it, and a CI run once ran out of disk installing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# Debian packages the tools call: the Cortex-M cross-compiler and emulator (compile/verify), the
# text-to-speech engines (speech generator), and Chromium for the browser tests of the app.
# Installed when make runs as root; QEMU without its recommends (display and audio back ends).
DEBS   := dataset-fashion-mnist gcc-arm-none-eabi espeak-ng flite chromium
DEBS_NR := qemu-system-arm

.PHONY: demo test test-all install data clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-cache-dir torch==2.13.0
	$(BIN)/pip install --quiet --no-cache-dir -e '.[test]'
	@touch $(STAMP)

data:
	@if [ ! -f $(FMNIST) ] || ! command -v arm-none-eabi-gcc >/dev/null || ! command -v espeak-ng >/dev/null \
	    || ! command -v chromium >/dev/null || ! command -v qemu-system-arm >/dev/null \
	    || ! command -v flite >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS_NR) >/dev/null; \
	  elif [ ! -f $(FMNIST) ]; then \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install $(DEBS) $(DEBS_NR)' (or make as root)"; exit 1; \
	  else \
	    echo "note: some of '$(DEBS) $(DEBS_NR)' are missing; the tests that need them are skipped"; \
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
