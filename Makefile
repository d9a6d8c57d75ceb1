# Two commands on a fresh machine: `make demo` (the main job end to end) and `make test` (the test suite).
# Both create the virtualenv and install graphrec when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphrec-installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on local disk; letting pip choose would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/graphrec demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/synth.py

clean:
	rm -rf work .pytest_cache
